"""DIMACS writing and a validating reader.

Files are plain DIMACS that any SAT / MaxSAT solver reads (``p cnf V C``, and the classic
``p wcnf V C TOP`` where a clause of weight TOP is hard). All CLUE annotations are comment lines
placed before the ``p`` line, because some strict solvers reject comments between clauses:

    c var <id> <name>                        names every variable
    c gate <first> <count> <side> <text>     clauses first .. first+count-1 (0-based, in file
                                             order) encode one gate of <side>: forget, retain,
                                             link (e_n -> n_f <-> n_r) or soft
    c neurons <name> <name> ...              every neuron of the model, in or out of the circuits
                                             (so a name that is no neuron can be told from a safe one)
"""

from clue.errors import ClueError
from clue.io import atomic_path


class Formula:
    """Named variables, hard clauses, soft clauses and the gate notes that group them."""

    def __init__(self):
        self.names = []  # variable id - 1 -> name
        self.ids = {}
        self.hard = []
        self.soft = []  # (clause, weight)
        self.notes = []  # (first clause index, count, side, text); soft clauses follow hard ones
        self.top = None
        self.neurons = None  # every neuron of the model (``c neurons``), when known

    def var(self, name):
        v = self.ids.get(name)
        if v is None:
            self.names.append(name)
            v = self.ids[name] = len(self.names)
        return v

    def group(self, side, text, clauses):
        self.notes.append((len(self.hard), len(clauses), side, text))
        self.hard.extend(clauses)


def write(path, formula, kind, header=()):
    """Write ``formula`` as ``kind`` 'cnf' (hard clauses only) or 'wcnf' (classic, with TOP)."""
    lines = [f"c {h}" for h in header]
    lines += [f"c var {i} {n}" for i, n in enumerate(formula.names, 1)]
    lines += [f"c gate {a} {c} {s} {t}" for a, c, s, t in formula.notes]
    if formula.neurons is not None:
        lines.append("c neurons " + " ".join(formula.neurons))
    if kind == "cnf":
        lines.append(f"p cnf {len(formula.names)} {len(formula.hard)}")
        lines += [" ".join(map(str, cl)) + " 0" for cl in formula.hard]
    else:
        top = formula.top
        lines.append(f"p wcnf {len(formula.names)} {len(formula.hard) + len(formula.soft)} {top}")
        lines += [f"{top} " + " ".join(map(str, cl)) + " 0" for cl in formula.hard]
        lines += [f"{w} " + " ".join(map(str, cl)) + " 0" for cl, w in formula.soft]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


class Parsed:
    """A read DIMACS file: ``kind``, ``nvars``, ``hard``, ``soft`` [(clause, weight)], ``top``,
    ``names`` (id -> name), ``ids`` (name -> id), ``notes`` [(first, count, side, text)]."""

    def __init__(self):
        self.kind = None
        self.nvars = 0
        self.hard, self.soft, self.notes = [], [], []
        self.top = None
        self.names, self.ids = {}, {}
        self.neurons = None

    def name(self, lit):
        return ("-" if lit < 0 else "") + self.names.get(abs(lit), f"x{abs(lit)}")


def read(path, expect=None):
    """Parse a CLUE DIMACS file, failing with the file name and line number of the first error."""
    try:
        text = open(path).read()
    except FileNotFoundError:
        raise ClueError(f"{path}: file not found") from None
    except UnicodeDecodeError:
        raise ClueError(f"{path}: not a text file") from None
    p = Parsed()
    n_declared = header_line = None
    for lineno, line in enumerate(text.splitlines(), 1):
        tok = line.split()
        if not tok:
            continue

        def fail(msg):
            raise ClueError(f"{path}:{lineno}: {msg}: {line.strip()[:80]!r}")

        if tok[0] == "c":
            if len(tok) >= 2 and tok[1] == "var":
                if len(tok) != 4 or not tok[2].isdigit():
                    fail("a variable name line must read 'c var <id> <name>'")
                v = int(tok[2])
                if v in p.names or tok[3] in p.ids:
                    fail(f"variable {v} or name {tok[3]} named twice")
                p.names[v], p.ids[tok[3]] = tok[3], v
            elif len(tok) >= 2 and tok[1] == "gate":
                if len(tok) < 6 or not (tok[2].isdigit() and tok[3].isdigit()):
                    fail("a gate line must read 'c gate <first> <count> <side> <text>'")
                p.notes.append((int(tok[2]), int(tok[3]), tok[4], line.split(None, 5)[5]))
            elif len(tok) >= 2 and tok[1] == "neurons":
                p.neurons = tok[2:]
            continue
        if tok[0] == "p":
            if header_line is not None:
                fail("second 'p' line")
            if len(tok) == 4 and tok[1] == "cnf":
                p.kind = "cnf"
            elif len(tok) == 5 and tok[1] == "wcnf":
                p.kind = "wcnf"
            else:
                fail("expected 'p cnf V C' or 'p wcnf V C TOP'")
            try:
                nums = [int(t) for t in tok[2:]]
            except ValueError:
                fail("the header counts must be integers")
            if min(nums) < 0 or (p.kind == "wcnf" and nums[2] < 1):
                fail("negative count or non-positive TOP")
            p.nvars, n_declared = nums[0], nums[1]
            p.top = nums[2] if p.kind == "wcnf" else None
            header_line = lineno
            continue
        if header_line is None:
            fail("clause before the 'p' header line")
        try:
            nums = [int(t) for t in tok]
        except ValueError:
            fail("a clause line must hold integers only")
        if nums[-1] != 0:
            fail("a clause must end with 0 on its line")
        weight = None
        if p.kind == "wcnf":
            weight, nums = nums[0], nums[1:]
            if weight < 1:
                fail("a clause weight must be a positive integer")
        lits = nums[:-1]
        if not lits or 0 in lits:
            fail("empty clause or 0 inside a clause")
        if any(abs(x) > p.nvars for x in lits):
            fail(f"literal outside 1..{p.nvars}")
        if weight is None or weight >= p.top:
            p.hard.append(lits)
        else:
            p.soft.append((lits, weight))
    if header_line is None:
        raise ClueError(f"{path}: no 'p cnf' / 'p wcnf' header line")
    if expect and p.kind != expect:
        raise ClueError(f"{path}:{header_line}: expected a '{expect}' file, found '{p.kind}'")
    n_read = len(p.hard) + len(p.soft)
    if n_read != n_declared:
        raise ClueError(f"{path}:{header_line}: header declares {n_declared} clauses, file has {n_read}")
    bad = [v for v in p.names if not 1 <= v <= p.nvars]
    if bad:
        raise ClueError(f"{path}: 'c var' names variable {bad[0]} outside 1..{p.nvars}")
    return p
