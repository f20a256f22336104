"""One process of the multi-process test (tests/test_multiprocess.py): samples from the initial
params and trains two steps on a (data=4, fsdp=2) mesh over every device of every process, then
process 0 writes what it saw (losses, gradient norms, params before and after, sampled tokens)
to an .npz. Run as
    python tests/helpers/multiprocess_worker.py OUT NUM_PROCESSES PROCESS_ID PORT
with XLA_FLAGS giving each process its share of the 8 fake CPU devices."""

import sys

from jaxrl_reason import distributed


def main(out: str, num_processes: int, process_id: int, port: int) -> None:
    if num_processes > 1:
        assert distributed.maybe_initialize(f"127.0.0.1:{port}", num_processes, process_id)
    import jax
    import numpy as np

    from jaxrl_reason import parallel
    from jaxrl_reason.data.batching import Example, make_batch
    from jaxrl_reason.models.transformer import ModelConfig
    from jaxrl_reason.sampling.sampler import Sampler, SamplingConfig
    from jaxrl_reason.training.optim import make_optimizer
    from jaxrl_reason.training.trainer import Trainer

    assert jax.process_count() == num_processes and jax.device_count() == 8
    cfg = ModelConfig(vocab_size=40, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2,
                      head_dim=8, d_ff=64, max_len=64)
    mesh = parallel.make_mesh(data=4, fsdp=2)
    trainer = Trainer(cfg, make_optimizer(learning_rate=1e-2, warmup_steps=1), mesh,
                      banned_ids=(0, 1))
    state = trainer.init(0)
    rng = np.random.default_rng(0)
    batches = []
    for _ in range(2):  # every process builds the same global batch; each places its rows
        examples = [Example(tuple(rng.integers(3, 40, 3)), tuple(rng.integers(3, 40, n)))
                    for n in rng.integers(2, 10, 16)]
        batches.append(make_batch(examples, 16, 0))
    prompts = [[1, *rng.integers(3, 40, rng.integers(0, 6))] for _ in range(12)]
    # Sampling reads the initial params, identical in both runs (trained ones are not: see the
    # test), so its tokens and log-probs can be compared tightly.
    sampler = Sampler(cfg, stop_tokens=[2], mesh=mesh, banned_ids=(0, 1))
    sampler.load(state["params"])
    samples = sampler.generate(prompts, SamplingConfig(max_new_tokens=10, temperature=1.0,
                                                       n=2), key=5)
    init = parallel.to_host(state["params"])
    losses, grad_norms = [], []
    for batch in batches:
        state, metrics = trainer.train_step(state, batch, 1e-2)
        losses.append(float(parallel.to_host(metrics["loss"])))
        grad_norms.append(float(parallel.to_host(metrics["grad_norm"])))
    params = parallel.to_host(state["params"])
    if jax.process_index() == 0:
        np.savez(out, losses=np.asarray(losses), grad_norms=np.asarray(grad_norms),
                 tokens=samples.tokens, lengths=samples.lengths, logprobs=samples.logprobs,
                 **{f"p{i}": x for i, x in enumerate(jax.tree.leaves(params))},
                 **{f"init{i}": x for i, x in enumerate(jax.tree.leaves(init))})


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
