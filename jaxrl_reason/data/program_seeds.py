"""Hand-written seed programs for the Absolute Zero task (ours, written for this repo).

Each seed is (message, program, ((input, output), ...)): the message describes f for the
induction task; an input is the argument list as written inside f(...); the output is
repr(f(...)), produced by running the program in the executor (tests re-check every one).
"""

SEEDS = (
    ('Reverses the order of the words in a sentence.',
     """\
def f(s):
    return " ".join(reversed(s.split()))
""",
     (
         ('"hello big world"', "'world big hello'"),
         ('"a b"', "'b a'"),
         ('"single"', "'single'"),
         ('"  spaced   out  words "', "'words out spaced'"),
     )),
    ('Counts how often each character occurs, ignoring spaces.',
     """\
def f(text):
    counts = {}
    for ch in text:
        if ch != " ":
            counts[ch] = counts.get(ch, 0) + 1
    return counts
""",
     (
         ('"banana"', "{'b': 1, 'a': 3, 'n': 2}"),
         ('"a b a"', "{'a': 2, 'b': 1}"),
         ('"mississippi"', "{'m': 1, 'i': 4, 's': 4, 'p': 2}"),
         ('""', '{}'),
     )),
    ('Returns the n-th Fibonacci number (0-indexed) by recursion with memoization.',
     """\
def f(n, memo=None):
    if memo is None:
        memo = {}
    if n < 2:
        return n
    if n not in memo:
        memo[n] = f(n - 1, memo) + f(n - 2, memo)
    return memo[n]
""",
     (
         ('0', '0'),
         ('1', '1'),
         ('10', '55'),
         ('30', '832040'),
         ('7', '13'),
     )),
    ('Sums the digits of a non-negative integer repeatedly until one digit is left.',
     """\
def f(n):
    while n >= 10:
        n = sum(int(d) for d in str(n))
    return n
""",
     (
         ('38', '2'),
         ('0', '0'),
         ('999999', '9'),
         ('12345', '6'),
     )),
    ('Keeps the running maximum of a list.',
     """\
def f(xs):
    out = []
    best = None
    for x in xs:
        best = x if best is None or x > best else best
        out.append(best)
    return out
""",
     (
         ('[3, 1, 4, 1, 5, 9, 2, 6]', '[3, 3, 4, 4, 5, 9, 9, 9]'),
         ('[]', '[]'),
         ('[5, 4, 3]', '[5, 5, 5]'),
         ('[-2, -1, -3]', '[-2, -1, -1]'),
     )),
    ('Groups words by their first letter, each group sorted.',
     """\
def f(words):
    groups = {}
    for w in words:
        groups.setdefault(w[0], []).append(w)
    return {k: sorted(v) for k, v in sorted(groups.items())}
""",
     (
         ('["apple", "avocado", "banana", "blueberry", "cherry"]',
          "{'a': ['apple', 'avocado'], 'b': ['banana', 'blueberry'], 'c': ['cherry']}"),
         ('["zeta", "alpha", "zoo"]', "{'a': ['alpha'], 'z': ['zeta', 'zoo']}"),
         ('[]', '{}'),
     )),
    ('Run-length encodes a string as (character, count) pairs.',
     """\
def f(s):
    out = []
    for ch in s:
        if out and out[-1][0] == ch:
            out[-1] = (ch, out[-1][1] + 1)
        else:
            out.append((ch, 1))
    return out
""",
     (
         ('"aaabccdddd"', "[('a', 3), ('b', 1), ('c', 2), ('d', 4)]"),
         ('"abc"', "[('a', 1), ('b', 1), ('c', 1)]"),
         ('""', '[]'),
         ('"zzzzzz"', "[('z', 6)]"),
     )),
    ('Checks whether brackets of three kinds are balanced.',
     """\
def f(s):
    pairs = {")": "(", "]": "[", "}": "{"}
    stack = []
    for ch in s:
        if ch in "([{":
            stack.append(ch)
        elif ch in pairs:
            if not stack or stack.pop() != pairs[ch]:
                return False
    return not stack
""",
     (
         ('"([]{()})"', 'True'),
         ('"(]"', 'False'),
         ('"(("', 'False'),
         ('"a(b)c[d]"', 'True'),
         ('""', 'True'),
     )),
    ('Returns the prime factorization as a list of primes in increasing order.',
     """\
def f(n):
    factors = []
    d = 2
    while d * d <= n:
        while n % d == 0:
            factors.append(d)
            n //= d
        d += 1
    if n > 1:
        factors.append(n)
    return factors
""",
     (
         ('360', '[2, 2, 2, 3, 3, 5]'),
         ('97', '[97]'),
         ('1', '[]'),
         ('1001', '[7, 11, 13]'),
         ('1024', '[2, 2, 2, 2, 2, 2, 2, 2, 2, 2]'),
     )),
    ('Rotates a list k places to the right.',
     """\
def f(xs, k):
    if not xs:
        return xs
    k %= len(xs)
    return xs[-k:] + xs[:-k] if k else list(xs)
""",
     (
         ('[1, 2, 3, 4, 5], 2', '[4, 5, 1, 2, 3]'),
         ('[1, 2, 3], 0', '[1, 2, 3]'),
         ('[], 3', '[]'),
         ('["a", "b"], 5', "['b', 'a']"),
     )),
    ('Transposes a matrix given as a list of rows.',
     """\
def f(m):
    return [list(col) for col in zip(*m)]
""",
     (
         ('[[1, 2, 3], [4, 5, 6]]', '[[1, 4], [2, 5], [3, 6]]'),
         ('[[1]]', '[[1]]'),
         ('[]', '[]'),
         ('[[1, 2], [3, 4], [5, 6]]', '[[1, 3, 5], [2, 4, 6]]'),
     )),
    ('Caesar-shifts letters by k, keeping case and leaving other characters.',
     """\
def f(s, k):
    out = []
    for ch in s:
        if ch.isalpha():
            base = ord("A") if ch.isupper() else ord("a")
            out.append(chr(base + (ord(ch) - base + k) % 26))
        else:
            out.append(ch)
    return "".join(out)
""",
     (
         ('"Hello, World!", 3', "'Khoor, Zruog!'"),
         ('"xyz", 2', "'zab'"),
         ('"abc", -1', "'zab'"),
         ('"", 5', "''"),
     )),
    ('Counts the distinct ways to climb n stairs taking 1 or 2 steps at a time.',
     """\
def f(n):
    a, b = 1, 1
    for _ in range(n):
        a, b = b, a + b
    return a
""",
     (
         ('0', '1'),
         ('1', '1'),
         ('5', '8'),
         ('20', '10946'),
     )),
    ('Flattens an arbitrarily nested list.',
     """\
def f(xs):
    out = []
    for x in xs:
        if isinstance(x, list):
            out.extend(f(x))
        else:
            out.append(x)
    return out
""",
     (
         ('[1, [2, [3, [4]], 5]]', '[1, 2, 3, 4, 5]'),
         ('[]', '[]'),
         ('[[[]]]', '[]'),
         ('["a", ["b", "c"]]', "['a', 'b', 'c']"),
     )),
    ('Returns the longest common prefix of a list of strings.',
     """\
def f(words):
    if not words:
        return ""
    prefix = words[0]
    for w in words[1:]:
        while not w.startswith(prefix):
            prefix = prefix[:-1]
    return prefix
""",
     (
         ('["flower", "flow", "flight"]', "'fl'"),
         ('["dog", "car"]', "''"),
         ('["same", "same"]', "'same'"),
         ('[]', "''"),
     )),
    ('Converts a non-negative integer to its binary digits as a string, without bin().',
     """\
def f(n):
    if n == 0:
        return "0"
    digits = ""
    while n:
        digits = str(n % 2) + digits
        n //= 2
    return digits
""",
     (
         ('0', "'0'"),
         ('5', "'101'"),
         ('255', "'11111111'"),
         ('1024', "'10000000000'"),
     )),
    ('Merges two sorted lists into one sorted list.',
     """\
def f(a, b):
    i = j = 0
    out = []
    while i < len(a) and j < len(b):
        if a[i] <= b[j]:
            out.append(a[i])
            i += 1
        else:
            out.append(b[j])
            j += 1
    return out + a[i:] + b[j:]
""",
     (
         ('[1, 4, 9], [2, 3, 10]', '[1, 2, 3, 4, 9, 10]'),
         ('[], [1]', '[1]'),
         ('[5], []', '[5]'),
         ('[1, 1], [1]', '[1, 1, 1]'),
     )),
    ('Finds the indices of two numbers that add up to the target, or None.',
     """\
def f(nums, target):
    seen = {}
    for i, x in enumerate(nums):
        if target - x in seen:
            return (seen[target - x], i)
        seen[x] = i
    return None
""",
     (
         ('[2, 7, 11, 15], 9', '(0, 1)'),
         ('[3, 2, 4], 6', '(1, 2)'),
         ('[1, 2], 7', 'None'),
         ('[5, 5], 10', '(0, 1)'),
     )),
    ('Inverts a dictionary, collecting keys that share a value into sorted lists.',
     """\
def f(d):
    inv = {}
    for k, v in d.items():
        inv.setdefault(v, []).append(k)
    return {v: sorted(ks) for v, ks in inv.items()}
""",
     (
         ('{"a": 1, "b": 2, "c": 1}', "{1: ['a', 'c'], 2: ['b']}"),
         ('{}', '{}'),
         ('{"x": "y"}', "{'y': ['x']}"),
         ('{1: 0, 2: 0, 3: 0}', '{0: [1, 2, 3]}'),
     )),
    ("Returns the sorted list of all subsets' sums of a list of numbers, without repeats.",
     """\
def f(xs):
    sums = {0}
    for x in xs:
        sums |= {s + x for s in sums}
    return sorted(sums)
""",
     (
         ('[1, 2, 4]', '[0, 1, 2, 3, 4, 5, 6, 7]'),
         ('[]', '[0]'),
         ('[3, 3]', '[0, 3, 6]'),
         ('[5, -2]', '[-2, 0, 3, 5]'),
     )),
    ("Computes the greatest common divisor with Euclid's algorithm, recursively.",
     """\
def f(a, b):
    return a if b == 0 else f(b, a % b)
""",
     (
         ('48, 18', '6'),
         ('17, 5', '1'),
         ('0, 9', '9'),
         ('100, 75', '25'),
     )),
    ('Checks whether a string is a palindrome, ignoring case and non-letters.',
     """\
def f(s):
    letters = [c.lower() for c in s if c.isalnum()]
    return letters == letters[::-1]
""",
     (
         ('"A man, a plan, a canal: Panama"', 'True'),
         ('"hello"', 'False'),
         ('""', 'True'),
         ('"No lemon, no melon"', 'True'),
     )),
    ('Returns the number of islands of 1s in a grid (4-connected).',
     """\
def f(grid):
    seen = set()
    count = 0
    for r in range(len(grid)):
        for c in range(len(grid[0])):
            if grid[r][c] == 1 and (r, c) not in seen:
                count += 1
                stack = [(r, c)]
                while stack:
                    y, x = stack.pop()
                    if (y, x) in seen or not (0 <= y < len(grid) and 0 <= x < len(grid[0])):
                        continue
                    if grid[y][x] != 1:
                        continue
                    seen.add((y, x))
                    stack += [(y + 1, x), (y - 1, x), (y, x + 1), (y, x - 1)]
    return count
""",
     (
         ('[[1, 1, 0], [0, 1, 0], [1, 0, 1]]', '3'),
         ('[[0]]', '0'),
         ('[[1, 1], [1, 1]]', '1'),
         ('[[1, 0, 1, 0, 1]]', '3'),
     )),
    ('Evaluates a space-separated expression in reverse Polish notation with integers.',
     """\
def f(expr):
    stack = []
    for tok in expr.split():
        if tok in "+-*":
            b, a = stack.pop(), stack.pop()
            stack.append(a + b if tok == "+" else a - b if tok == "-" else a * b)
        else:
            stack.append(int(tok))
    return stack[-1]
""",
     (
         ('"3 4 + 2 *"', '14'),
         ('"5 1 2 + 4 * + 3 -"', '14'),
         ('"7"', '7'),
         ('"2 3 4 * -"', '-10'),
     )),
    ("Lists all permutations of a string's characters in lexicographic order, without duplicates.",
     """\
def f(s):
    if len(s) <= 1:
        return [s]
    out = set()
    for i, ch in enumerate(s):
        for rest in f(s[:i] + s[i + 1:]):
            out.add(ch + rest)
    return sorted(out)
""",
     (
         ('"abc"', "['abc', 'acb', 'bac', 'bca', 'cab', 'cba']"),
         ('"aab"', "['aab', 'aba', 'baa']"),
         ('"x"', "['x']"),
         ('"ba"', "['ab', 'ba']"),
     )),
    ('Counts the vowels and consonants of a word as a tuple.',
     """\
def f(word):
    vowels = sum(1 for c in word.lower() if c in "aeiou")
    consonants = sum(1 for c in word.lower() if c.isalpha()) - vowels
    return (vowels, consonants)
""",
     (
         ('"Programming"', '(3, 8)'),
         ('"aeiou"', '(5, 0)'),
         ('"rhythm"', '(0, 6)'),
         ('"A1b2"', '(1, 1)'),
     )),
    ('Computes the moving averages of window k, rounded to 2 decimals.',
     """\
def f(xs, k):
    return [round(sum(xs[i:i + k]) / k, 2) for i in range(len(xs) - k + 1)]
""",
     (
         ('[1, 2, 3, 4, 5], 2', '[1.5, 2.5, 3.5, 4.5]'),
         ('[10, 20, 30], 3', '[20.0]'),
         ('[1, 2], 3', '[]'),
         ('[1, 1, 2, 3, 5, 8], 4', '[1.75, 2.75, 4.5]'),
     )),
    ("Builds Pascal's triangle with n rows.",
     """\
def f(n):
    rows = []
    for i in range(n):
        row = [1] * (i + 1)
        for j in range(1, i):
            row[j] = rows[-1][j - 1] + rows[-1][j]
        rows.append(row)
    return rows
""",
     (
         ('0', '[]'),
         ('1', '[[1]]'),
         ('5', '[[1], [1, 1], [1, 2, 1], [1, 3, 3, 1], [1, 4, 6, 4, 1]]'),
         ('3', '[[1], [1, 1], [1, 2, 1]]'),
     )),
    ('Returns the words that appear most often, alphabetically.',
     """\
def f(text):
    counts = {}
    for w in text.lower().split():
        counts[w] = counts.get(w, 0) + 1
    if not counts:
        return []
    top = max(counts.values())
    return sorted(w for w, c in counts.items() if c == top)
""",
     (
         ('"the cat and the hat"', "['the']"),
         ('"b a b a c"', "['a', 'b']"),
         ('""', '[]'),
         ('"One one ONE two"', "['one']"),
     )),
    ('Converts an integer between 1 and 3999 to a Roman numeral.',
     """\
def f(n):
    table = [(1000, "M"), (900, "CM"), (500, "D"), (400, "CD"), (100, "C"), (90, "XC"),
             (50, "L"), (40, "XL"), (10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I")]
    out = ""
    for value, numeral in table:
        while n >= value:
            out += numeral
            n -= value
    return out
""",
     (
         ('1994', "'MCMXCIV'"),
         ('4', "'IV'"),
         ('3999', "'MMMCMXCIX'"),
         ('58', "'LVIII'"),
     )),
    ('Splits a list into chunks of size k; the last chunk may be shorter.',
     """\
def f(xs, k):
    return [xs[i:i + k] for i in range(0, len(xs), k)]
""",
     (
         ('[1, 2, 3, 4, 5], 2', '[[1, 2], [3, 4], [5]]'),
         ('[], 3', '[]'),
         ('["a", "b", "c"], 1', "[['a'], ['b'], ['c']]"),
         ('[1, 2, 3], 5', '[[1, 2, 3]]'),
     )),
    ('Returns the length of the longest strictly increasing subsequence.',
     """\
def f(xs):
    best = []
    for x in xs:
        lengths = [best[i] for i in range(len(best)) if xs[i] < x]
        best.append(1 + max(lengths, default=0))
    return max(best, default=0)
""",
     (
         ('[10, 9, 2, 5, 3, 7, 101, 18]', '4'),
         ('[]', '0'),
         ('[5, 4, 3]', '1'),
         ('[1, 2, 3, 1, 2, 3, 4]', '4'),
     )),
    ('Applies a list of (operation, amount) steps to a starting balance, skipping overdrafts.',
     """\
def f(balance, steps):
    history = []
    for op, amount in steps:
        if op == "deposit":
            balance += amount
        elif op == "withdraw" and amount <= balance:
            balance -= amount
        history.append(balance)
    return balance, history
""",
     (
         ('100, [("withdraw", 30), ("deposit", 5), ("withdraw", 500)]', '(75, [70, 75, 75])'),
         ('0, []', '(0, [])'),
         ('10, [("deposit", 10), ("withdraw", 20)]', '(0, [20, 0])'),
     )),
    ('Returns the set of characters that appear in every word.',
     """\
def f(words):
    common = set(words[0]) if words else set()
    for w in words[1:]:
        common &= set(w)
    return common
""",
     (
         ('["bella", "label", "roller"]', "{'e', 'l'}"),
         ('["abc", "def"]', 'set()'),
         ('[]', 'set()'),
         ('["zz"]', "{'z'}"),
     )),
    ('Computes the Collatz sequence length until reaching 1.',
     """\
def f(n):
    steps = 0
    while n != 1:
        n = n // 2 if n % 2 == 0 else 3 * n + 1
        steps += 1
    return steps
""",
     (
         ('1', '0'),
         ('6', '8'),
         ('27', '111'),
         ('97', '118'),
     )),
    ('Scores a word like a letter game: vowels 1, other letters 2, doubled letters bonus 3.',
     """\
def f(word):
    score = 0
    for i, c in enumerate(word):
        score += 1 if c in "aeiou" else 2
        if i and word[i - 1] == c:
            score += 3
    return score
""",
     (
         ('"letter"', '13'),
         ('"aa"', '5'),
         ('""', '0'),
         ('"bookkeeper"', '24'),
     )),
    ('Returns the matrix product of two matrices.',
     """\
def f(a, b):
    return [[sum(x * y for x, y in zip(row, col)) for col in zip(*b)] for row in a]
""",
     (
         ('[[1, 2], [3, 4]], [[5, 6], [7, 8]]', '[[19, 22], [43, 50]]'),
         ('[[1, 0], [0, 1]], [[9, 8], [7, 6]]', '[[9, 8], [7, 6]]'),
         ('[[2]], [[3]]', '[[6]]'),
     )),
)
