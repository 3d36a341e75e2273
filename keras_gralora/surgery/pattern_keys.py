"""PEFT's pattern keys (`rank_pattern`, `alpha_pattern`, ...) matched in linear time, so no key can hang a load.

PEFT gives a module the value of the first key for which
`re.match(rf"(.*\\.)?({key})$", module)` matches. Python's `re` backtracks:
a key such as `(.*.){14}X`, read from an untrusted `adapter_config.json`,
keeps it busy for minutes. Here the same wrapped expression is parsed by
Python's own parser (so it means exactly what it means to `re`), turned into
a Thompson automaton and run over the name one character at a time: time
`O(len(name) * states)`, never exponential. Each single-character test
(a literal, `.`, a class such as `[^a-z]` or `\\w`, under the flags in force)
is compiled by `re` itself, so case-folding and Unicode classes agree with it.

Refused by name, before any matching: what needs backtracking (back-
references, lookarounds, conditionals, possessive and atomic groups), word
boundaries, and keys whose automaton would exceed `MAX_STATES` (a large
`{m,n}`). A key that is not an expression as PEFT wraps it (`(?i)QUERY`:
global flags in the middle) is refused as `re` refuses it, with a
`ValueError` naming the key.
"""

import functools
import re

try:  # Python 3.11+
    from re import _compiler, _parser
    from re import _constants as sre
except ImportError:  # Python 3.10
    import sre_compile as _compiler
    import sre_constants as sre
    import sre_parse as _parser

MAX_STATES = 4096
_CACHE_LIMIT = 50_000
_REFUSED = {
    sre.GROUPREF: "a backreference",
    sre.GROUPREF_EXISTS: "a conditional group (?(1)...)",
    sre.ASSERT: "a lookahead or lookbehind",
    sre.ASSERT_NOT: "a negative lookahead or lookbehind",
}
for _name, _what in (("POSSESSIVE_REPEAT", "a possessive quantifier"), ("ATOMIC_GROUP", "an atomic group (?>...)")):
    if hasattr(sre, _name):  # Python 3.11+
        _REFUSED[getattr(sre, _name)] = _what
_LEAVES = (sre.LITERAL, sre.NOT_LITERAL, sre.ANY, sre.IN)
_REPEATS = (sre.MAX_REPEAT, sre.MIN_REPEAT)
_ASSERTIONS = (sre.AT_BEGINNING, sre.AT_BEGINNING_STRING, sre.AT_END, sre.AT_END_STRING)


class Unsupported(ValueError):
    """A key outside the subset matched in linear time."""


def key_matcher(key, separator, where, field):
    """A function `name -> bool`: whether `key` matches `name` by PEFT's rule, with `separator` before it.

    Args:
        key: The pattern key (a regular expression).
        separator: What stands between path parts, as a regular expression
            (`r"\\."` for module names, `"/"` for Keras layer paths).
        where: How errors name the caller.
        field: The pattern's name (`rank_pattern`...), for errors.

    Raises:
        ValueError: `key` is not a string, not an expression as PEFT wraps
            it, or outside the linear-time subset (named).
    """
    if not isinstance(key, str):
        raise ValueError(f"{where}: {field} keys must be strings (regular expressions), got {key!r}.")
    try:
        return _automaton(key, separator).matches
    except Unsupported as error:
        raise ValueError(
            f"{where}: {field} key {key!r} uses {error}, which keras_gralora does not match: pattern keys are "
            "matched in linear time so that no file can hang a load. Write the key with literals, classes, "
            "groups, '|' and quantifiers."
        ) from None
    except (re.error, OverflowError, RecursionError) as error:
        raise ValueError(
            f"{where}: {field} key {key!r} is not a regular expression as PEFT matches it, "
            f"re.match(r'(.*{separator})?({key})$', name): {error}."
        ) from None


@functools.lru_cache(maxsize=256)
def _automaton(key, separator):
    return _Automaton(_parser.parse(rf"(.*{separator})?({key})$"))


class _Automaton:
    """A Thompson NFA of a parsed expression; `matches(name)` is `re.match(expression, name) is not None`."""

    def __init__(self, parsed):
        self.kind, self.arg, self.next = [], [], []  # per state: "char" / "split" / "at" / "accept"
        self._leaves = {}
        self.accept = self._state("accept", None, ())
        self.start = self._sequence(list(parsed), parsed.state.flags, self.accept)
        self._steps, self._closures = {}, {}

    def _state(self, kind, arg, targets):
        if len(self.kind) >= MAX_STATES:
            raise Unsupported(f"more than {MAX_STATES} automaton states (a large {{m,n}} repeat)")
        self.kind.append(kind)
        self.arg.append(arg)
        self.next.append(list(targets))
        return len(self.kind) - 1

    def _sequence(self, items, flags, then):
        for op, av in reversed(items):
            then = self._item(op, av, flags, then)
        return then

    def _item(self, op, av, flags, then):
        if op in _REFUSED:
            raise Unsupported(_REFUSED[op])
        if op in _LEAVES:
            return self._state("char", self._leaf(op, av, flags), [then])
        if op == sre.SUBPATTERN:
            _group, add, remove, body = av
            return self._sequence(list(body), (flags | add) & ~remove, then)
        if op == sre.BRANCH:
            return self._state("split", None, [self._sequence(list(b), flags, then) for b in av[1]])
        if op in _REPEATS:
            return self._repeat(*av, flags, then)
        if op == sre.AT:
            if av not in _ASSERTIONS:
                raise Unsupported("a word boundary (\\b or \\B)")
            return self._state("at", (av, bool(flags & sre.SRE_FLAG_MULTILINE)), [then])
        raise Unsupported(f"the construct {op}")

    def _repeat(self, low, high, body, flags, then):
        """`body{low,high}`: optional copies (or a loop) after `low` required ones, built back to front."""
        body = list(body)
        if low > MAX_STATES or (high != sre.MAXREPEAT and high > MAX_STATES):
            raise Unsupported(f"a repeat of up to {max(low, high)} copies (over {MAX_STATES} states)")
        if high == sre.MAXREPEAT:
            loop = self._state("split", None, [])
            self.next[loop] = [self._sequence(body, flags, loop), then]
            then = loop
        else:
            for _ in range(high - low):
                then = self._state("split", None, [self._sequence(body, flags, then), then])
        for _ in range(low):
            then = self._sequence(body, flags, then)
        return then

    def _leaf(self, op, av, flags):
        """One character's test, compiled by `re` under `flags` (case-folding, DOTALL, Unicode classes)."""
        key = (op, repr(av), flags)
        if key not in self._leaves:
            state = _parser.State()
            state.flags = flags
            self._leaves[key] = _compiler.compile(_parser.SubPattern(state, [(op, av)]), flags).fullmatch
        return self._leaves[key]

    def _closure(self, states, context):
        """Every state reachable from `states` without reading a character, at a position described by `context`."""
        cache_key = (states, context)
        if cache_key not in self._closures:
            seen, todo = set(states), list(states)
            while todo:
                state = todo.pop()
                kind = self.kind[state]
                if kind == "split" or (kind == "at" and _holds(*self.arg[state], context)):
                    for target in self.next[state]:
                        if target not in seen:
                            seen.add(target)
                            todo.append(target)
            if len(self._closures) > _CACHE_LIMIT:
                self._closures.clear()
            self._closures[cache_key] = frozenset(seen)
        return self._closures[cache_key]

    def _step(self, states, char):
        cache_key = (states, char)
        if cache_key not in self._steps:
            found = frozenset(
                self.next[s][0] for s in states if self.kind[s] == "char" and self.arg[s](char) is not None
            )
            if len(self._steps) > _CACHE_LIMIT:
                self._steps.clear()
            self._steps[cache_key] = found
        return self._steps[cache_key]

    def matches(self, name):
        """Whether the expression matches at the start of `name` (`re.match`)."""
        states = self._closure(frozenset([self.start]), _context(name, 0))
        for position, char in enumerate(name):
            if self.accept in states:
                return True
            states = self._closure(self._step(states, char), _context(name, position + 1))
            if not states:
                return False
        return self.accept in states


def _context(name, position):
    """What zero-width assertions read at `position`: start, end, before a final newline, newline before, after."""
    end = len(name)
    return (
        position == 0,
        position == end,
        position == end - 1 and name[position] == "\n",
        position > 0 and name[position - 1] == "\n",
        position < end and name[position] == "\n",
    )


def _holds(code, multiline, context):
    start, end, before_final_newline, after_newline, before_newline = context
    if code == sre.AT_BEGINNING_STRING:
        return start
    if code == sre.AT_END_STRING:
        return end
    if code == sre.AT_BEGINNING:
        return start or (multiline and after_newline)
    return end or before_final_newline or (multiline and before_newline)  # AT_END
