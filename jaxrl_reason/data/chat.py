"""Any task's prompts in an instruct model's chat format (gin: wrap the task in `ChatTask`).

    star.task = @ChatTask()
    ChatTask.task = @Gsm8kTask()
    ChatTask.checkpoint = @HFCheckpoint()

The task's prompt becomes the user turn (after an optional system turn), rendered with the
checkpoint's chat template and its generation prompt, so the model sees the prompts it was
trained on; its completion is then the assistant turn, which the tokenizer's EOS (the
end-of-turn token of instruct checkpoints) ends. Targets and checks are the task's own.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import gin

from jaxrl_reason.data.tasks import Check, Problem, Task
from jaxrl_reason.tokenizers import HFTokenizer


class TokenizerSource(Protocol):
    """Anything that gives the chat tokenizer: `models.hf.HFCheckpoint` in the jobs' configs."""

    def tokenizer(self) -> HFTokenizer: ...


@gin.configurable
class ChatTask:
    def __init__(self, task: Task = gin.REQUIRED, checkpoint: TokenizerSource = gin.REQUIRED,
                 system: str | None = None):
        self.task = task
        self.name = f"chat_{task.name}"
        self.tokenizer = checkpoint.tokenizer()
        self.system = system

    def problems(self, split: str, seed: int) -> Iterator[Problem]:
        return self.task.problems(split, seed)

    def prompt(self, problem: Problem, hint: str | None = None) -> str:
        """The rendered conversation, less a leading BOS token text (encoding adds the id)."""
        messages = [{"role": "user", "content": self.task.prompt(problem, hint)}]
        if self.system is not None:
            messages.insert(0, {"role": "system", "content": self.system})
        text = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True)
        bos = self.tokenizer.special_tokens.get("bos_token")
        return text[len(bos):] if bos and text.startswith(bos) else text

    def target(self, problem: Problem, rationale: str | None = None) -> str:
        return self.task.target(problem, rationale)

    def check(self, problem: Problem, completion: str) -> Check:
        return self.task.check(problem, completion)

    def __getattr__(self, name: str):
        """The wrapped task's optional capabilities (`problems_of_length`, `check_batch`,
        `from_question`, `executor`, ...): a chat-wrapped task has exactly the ones it has."""
        if name == "task":  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.task, name)
