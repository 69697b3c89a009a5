"""Read `nvdisasm -c` output: functions, their instructions, labels and loops.

A listing is a sequence of functions (the kernel entry, then any subroutine it calls, such as
`$__internal_0_$__cuda_sm20_div_s64`), each a sequence of instruction lines

    /*0350*/              @!P1 CALL.REL.NOINC `($__internal_0_$__cuda_sm20_div_s64) ;

and label lines (`.L_x_12:`). Offsets are byte addresses within the kernel's text section, shared
by all its functions, so a branch target is resolved through the label table.

A loop is a backward branch: a `BRA` at offset b whose target t lies at or before it encloses the
instructions at [t, b]. A `BRA` to itself is the trap the compiler pads the end of a function with,
never a loop. Loops nest by interval containment.
"""

import re
from dataclasses import dataclass, field

_INSTRUCTION = re.compile(r"^\s*/\*([0-9a-fA-F]+)\*/\s+(.*?)\s*;?\s*$")
_LABEL = re.compile(r"^([.$A-Za-z_][\w.$]*):\s*$")
_PREDICATE = re.compile(r"^@!?U?P[T0-9]+\s+")
_TARGET = re.compile(r"`\(([^)]+)\)")


@dataclass(frozen=True)
class Instruction:
    offset: int
    opcode: str  # with its modifiers: "LDS.U.128", "ISETP.NE.AND.EX"
    operands: str
    predicate: str = ""
    target: str = ""  # the label a BRA / CALL / BSSY names, if any

    @property
    def base(self):
        """The opcode without modifiers: "LDS" of "LDS.U.128"."""
        return self.opcode.split(".")[0]


@dataclass
class Function:
    name: str
    instructions: list = field(default_factory=list)

    @property
    def start(self):
        return self.instructions[0].offset

    def body(self):
        """The instructions up to the last EXIT or RET: the padding after it (a branch-to-self
        trap and NOPs) is never executed."""
        last = max((i for i, ins in enumerate(self.instructions) if ins.base in ("EXIT", "RET")), default=None)
        return self.instructions if last is None else self.instructions[: last + 1]


@dataclass(frozen=True)
class Loop:
    start: int  # offset of the first instruction (the branch target)
    end: int  # offset of the backward branch
    instructions: tuple

    def contains(self, other):
        return self.start <= other.start and other.end <= self.end and self != other


@dataclass
class Listing:
    functions: list
    labels: dict  # label -> offset

    @property
    def entry(self):
        return self.functions[0]

    def function(self, name):
        for f in self.functions:
            if f.name == name:
                return f
        raise KeyError(name)

    def loops(self, function=None):
        """The loops of `function` (default: the entry), outermost first."""
        function = function or self.entry
        body = function.body()
        found = []
        for ins in body:
            if ins.base != "BRA" or ins.target not in self.labels:
                continue
            start = self.labels[ins.target]
            if start < ins.offset:
                members = tuple(i for i in body if start <= i.offset <= ins.offset)
                found.append(Loop(start, ins.offset, members))
        return sorted(found, key=lambda loop: (loop.start, -loop.end))


def _instruction(offset, text):
    predicate = ""
    match = _PREDICATE.match(text)
    if match:
        predicate = match.group(0).strip()
        text = text[match.end():]
    opcode, _, operands = text.partition(" ")
    target = _TARGET.search(operands)
    return Instruction(int(offset, 16), opcode, operands.strip(), predicate, target.group(1) if target else "")


def parse(text):
    """The Listing of one `nvdisasm -c` output (one kernel)."""
    functions, labels, pending = [], {}, []
    for line in text.splitlines():
        match = _INSTRUCTION.match(line)
        if match:
            if not functions:
                functions.append(Function("<anonymous>"))
            ins = _instruction(*match.groups())
            functions[-1].instructions.append(ins)
            for label in pending:
                labels[label] = ins.offset
            pending = []
            continue
        match = _LABEL.match(line)
        if not match:
            continue
        name = match.group(1)
        if name.startswith(".L"):
            pending.append(name)
        elif not name.startswith(".text."):
            functions.append(Function(name))
            pending.append(name)
    return Listing([f for f in functions if f.instructions], labels)
