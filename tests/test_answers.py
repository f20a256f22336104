"""Answer extraction and equality, including the bounded sympy fallback."""

import time

import pytest

from jaxrl_reason.rewards.answers import (
    answers_equal,
    extract_answer,
    latex_to_sympy,
    numbers_equal,
    parse_answer_line,
    parse_number,
)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("She pays 5*3 = <<5*3=15>>15 dollars.\n#### 15", "15"),
        ("so 1,200 in all\n#### 1,200\n", "1,200"),
        ("#### -7", "-7"),
        ("the answer is \\boxed{\\frac{1}{2}} and 9 more", "\\frac{1}{2}"),
        ("\\boxed{1} then \\boxed{\\sqrt{x^{2}}}", "\\sqrt{x^{2}}"),
        ("\\fbox{42}", "42"),
        ("costs $1,234.50 or 7 then 3/4 of it", "3/4"),
        ("first 12 then -3.5.", "-3.5"),
        ("no numbers here", None),
        ("unclosed \\boxed{12 and then 5", "5"),
        ("####", None),
        ("The answer is \\boxed{1{,}000}.", "1{,}000"),
        ("the hall seats 1{,}000 people", "1{,}000"),
        ("about 12{,}345{,}678 stars", "12{,}345{,}678"),
        ("a prize of $10,\\!000$ in all", "10,\\!000"),
        ("a run of 1\\,500 m", "1\\,500"),
    ],
)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


def test_parse_answer_line():
    assert parse_answer_line("1+2,C0\n,3C0\nA:3\n") == "3"
    assert parse_answer_line("A:12\nA:13\n") == "12"
    assert parse_answer_line("A:1 2\n") is None
    assert parse_answer_line("A:\n") is None
    assert parse_answer_line("no answer") is None
    assert parse_answer_line("xA:5") is None


@pytest.mark.parametrize(
    "pred, gold",
    [
        ("1,000", "1000"),
        ("$18", "18"),
        ("18.00", "18"),
        ("7.0", "7"),
        ("25%", "25"),
        ("3/4", "0.75"),
        ("\\frac{3}{4}", ".75"),
        ("-\\frac{1}{2}", "-0.5"),
        ("\\$5.50", "5.5"),
        ("0.3333333333", "1/3"),
        ("1{,}000", "1000"),
        ("12{,}345{,}678", "12345678"),
        ("\\$1{,}000.50", "1000.5"),
        ("10,\\!000", "10000"),
        ("1\\,500", "1500"),
        ("The answer is \\boxed{42}.", "42"),
        ("\\boxed{1{,}000}", "1,000"),
        ("\\(42\\)", "42"),
        ("\\[-7\\]", "-7"),
        ("\\dfrac{3}{4}", "0.75"),
        ("\\boxed{-\\tfrac{1}{2}}", "-0.5"),
        ("\\cfrac{1}{4}", "0.25"),
        ("\\frac12", "0.5"),
    ],
)
def test_numbers_equal(pred, gold):
    assert numbers_equal(pred, gold)
    assert numbers_equal(gold, pred)


@pytest.mark.parametrize(
    "pred, gold",
    [
        ("1,000", "100"),
        ("3/4", "0.7"),
        ("18", "-18"),
        ("0.333", "1/3"),
        ("abc", "1"),
        ("", "0"),
        ("3{,}14", "314"),  # a decimal comma, not a thousands separator
        ("1{,}00", "100"),
        ("The answer is \\boxed{41}.", "42"),
        ("\\boxed{42} at first, then \\boxed{41}", "42"),  # the last box is the answer
    ],
)
def test_numbers_not_equal(pred, gold):
    assert not numbers_equal(pred, gold)


@pytest.mark.parametrize(
    "completion",
    [
        "She sells 4 boxes of 250, so the total is \\boxed{1{,}000}.",
        "4 * 250 = <<4*250=1000>>1000\n#### 1{,}000",
        "So the hall seats 1{,}000.",
        "So the hall seats $1,\\!000$.",
    ],
)
def test_extracted_latex_thousands_match_a_gsm8k_answer(completion):
    """The path of `Gsm8kTask.check`: extraction, then numeric equality with the gold "1000"."""
    assert numbers_equal(extract_answer(completion), "1000")


def test_parse_number_rejects_non_numbers():
    assert parse_number("1/0") is None
    assert parse_number("1,00") is None  # not a thousands separator
    assert parse_number("(1,2)") is None
    assert parse_number("12,345,678") == 12345678


@pytest.mark.parametrize(
    "pred, gold",
    [
        ("\\boxed{\\dfrac{3}{4}}", "0.75"),
        ("\\tfrac12", "\\frac{1}{2}"),
        ("\\frac{\\sqrt{3}}{2}", "\\dfrac{\\sqrt3}{2}"),
        ("90^\\circ", "90"),
        ("90^{\\circ}", "90"),
        ("50\\%", "50"),
        ("\\$10", "10"),
        ("10\\text{ cm}", "10"),
        ("\\text{(B)}", "(B)"),
        ("x = 5", "5"),
        ("(1, 2]", "(1,2]"),
        ("\\left( -\\infty, 3 \\right)", "(-\\infty,3)"),
        ("(\\frac{1}{2}, 4)", "(0.5,4)"),
        ("2x+2", "2(x+1)"),
        ("\\sqrt{8}", "2\\sqrt{2}"),
        ("\\frac{\\pi}{2}", "\\pi/2"),
        ("x^2 - 1", "(x-1)(x+1)"),
        ("\\sqrt[3]{27}", "3"),
        ("The answer is \\boxed{42}.", "42"),
        ("\\text{The answer is }\\boxed{\\dfrac{1}{2}}.", "0.5"),
        ("so $x = \\boxed{5}$", "5"),
        ("Hence \\boxed{(1, 2]}.", "(1,2]"),
        ("1{,}000", "1000"),
        ("\\boxed{1{,}000}", "1,000"),
        ("\\boxed{\\$1{,}000}", "1000"),
        ("\\boxed{10{,}000\\text{ dollars}}", "10000"),
        ("(1{,}2)", "(1,2)"),
        ("\\(\\frac{1}{2}\\)", "0.5"),
        ("\\[\\boxed{\\sqrt{8}}\\]", "2\\sqrt{2}"),
        ("\\cfrac{1}{2}", "\\frac12"),
    ],
)
def test_answers_equal(pred, gold):
    assert answers_equal(pred, gold)
    assert answers_equal(gold, pred)


@pytest.mark.parametrize(
    "pred, gold",
    [
        ("0.75", "0.7"),
        ("(1,2]", "(1,2)"),
        ("(1,2)", "(2,1)"),
        ("(1,2,3)", "(1,2)"),
        ("2x+1", "2(x+1)"),
        ("\\sqrt{2}", "1.414"),
        ("x", "y"),
        ("", ""),
        ("5", ""),
        ("\\frac{1}{2", "0.5"),
        ("__import__('os')", "__import__('os')x"),
        ("exit()", "0"),
        ("(1,2)", "1,2x"),
        ("The answer is \\boxed{41}.", "42"),
        ("\\boxed{42} at first, then \\boxed{41}", "42"),
        ("3{,}14", "314"),
        ("1{,}000", "100"),
        ("\\boxed{1{,}000}", "1,001"),
    ],
)
def test_answers_not_equal(pred, gold):
    assert not answers_equal(pred, gold)
    assert not answers_equal(gold, pred)


def test_latex_to_sympy_only_passes_arithmetic_and_known_names():
    assert latex_to_sympy("\\frac{a}{\\sqrt{b}}") == "((a)/(sqrt(b)))"
    assert latex_to_sympy("2^{x}") == "2**(x)"
    assert latex_to_sympy("2ab+\\pi") == "2a*b+ pi "
    for bad in ["__import__", "x.real", "os.system", "'a'", "\\unknown{1}", "\\frac{1}{2"]:
        assert latex_to_sympy(bad) is None


def test_pathological_input_returns_false_within_the_time_limit():
    start = time.monotonic()
    assert not answers_equal("9^9^9^9^9", "1", timeout_s=1.0)
    assert time.monotonic() - start < 10  # includes a possible worker start
    # The killed worker is replaced: symbolic checks keep working afterwards.
    assert answers_equal("(a+b)^2", "a^2+2ab+b^2")
