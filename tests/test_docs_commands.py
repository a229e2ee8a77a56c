"""The commands in README.md and docs/ run as written: every `python -m MODULE`,
`python PATH.py`, `make TARGET` and `bash PATH` names something that exists, each
`--flag` is one its program defines, each `--config.a.b=v` a field of the config file it
is given, and every repository path in it exists. The usage lines of the code's
docstrings get the same checks; the docs' `config.x` mentions must name fields, their
"docs/X.md, Section" references pages and headings that exist, and the README's
Documentation list every page.

Programs are read with `ast`, not imported (no JAX); configs are loaded, as main.py
loads them (`ml_collections.config_flags`, locked). Placeholders (`...`, `<dir>`, `$VAR`,
`[--optional]`, upper-case words like `CONFIG`) are fine in values: flags are what is
checked.
"""

import ast
import functools
import importlib.util
import pathlib
import re
import shlex

import pytest
from absl import flags
from ml_collections import ConfigDict, config_flags

REPO = pathlib.Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
SHELL_FENCES = {"", "bash", "sh", "shell", "console"}
PYTHONS = {"python", "python3", ".venv/bin/python", "$(PY)"}
# Wrappers whose command line holds the program further on.
WRAPPERS = {"srun", "mpirun", "nice", "time", "timeout", "exec", "env"}
# Modules of other packages a doc may run; their own flags are not ours to check.
EXTERNAL_MODULES = {"pytest", "pip"}
# Flags every absl program has (absl.app and absl.logging define them).
ABSL_BUILTINS = {
    "help", "helpfull", "helpshort", "helpxml", "flagfile", "undefok", "only_check_args",
    "verbosity", "v", "logtostderr", "alsologtostderr", "log_dir", "stderrthreshold",
    "showprefixforinfo", "logger_levels", "pdb", "pdb_post_mortem", "run_with_pdb",
    "run_with_profiling", "profile_file", "use_cprofile_for_profiling",
}  # fmt: skip
ARGPARSE_BUILTINS = {"help"}
REPO_PATH = re.compile(
    r"(?<![\w/.])((?:configs|tests|benchmarks|teachers|avkd_jax|notebooks|docs)/[\w./-]*\w)"
)
PROGRAM_WORD = re.compile(r"(?:^|[\s;&|(])(?:python3?|\.venv/bin/python|make|bash)(?:\s|$)")
INLINE_COMMAND = re.compile(
    r"(?<!`)`((?:\.venv/bin/)?python3? [^`]+|(?:avkd_jax|teachers)\.[\w.]+ --[^`]+)`(?!`)"
)
PLACEHOLDER = re.compile(r"\.\.\.|…|<[^>]*>|\$|\b[A-Z][A-Z_]+\b|\*")


# ------------------------------------------------------------------ the docs' commands


def _fenced_blocks(text: str):
    """(first line number, body) of each shell (or unlabelled) fenced block."""
    for m in re.finditer(r"^```([\w-]*)[^\n]*\n(.*?)^```", text, re.M | re.S):
        if m.group(1) in SHELL_FENCES:
            yield text[: m.start()].count("\n") + 2, m.group(2)


def _logical_lines(first: int, body: str):
    """Lines with their `\\` continuations joined: (line number, text)."""
    out, start, parts = [], None, []
    for n, line in enumerate(body.splitlines(), first):
        start = n if start is None else start
        if line.rstrip().endswith("\\"):
            parts.append(line.rstrip()[:-1])
            continue
        out.append((start, " ".join([*parts, line]).strip()))
        start, parts = None, []
    return [(n, line) for n, line in out if line]


def _simple_commands(line: str, where: str = "") -> list[list[str]]:
    """The line's simple commands (split at ; && || | and shell keywords), comments dropped."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|()")
    lexer.whitespace_split = True
    try:
        tokens = list(lexer)
    except ValueError as e:  # An unclosed quote: the command would not run either.
        raise ValueError(f"{where}: {e}: {line}") from None
    commands, current = [], []
    for token in tokens:
        if set(token) <= set(";&|()") or token in {"do", "then", "done", "fi", "while"}:
            commands.append(current)
            current = []
        else:
            current.append(token)
    return [c for c in [*commands, current] if c]


def _program(tokens: list[str]) -> list[str] | None:
    """The command from its program on (`python ...`, `make ...`, `bash ...`), past
    environment assignments and wrappers; None for any other program."""
    i = 0
    while i < len(tokens) and re.fullmatch(r"\w+=.*", tokens[i]):
        i += 1
    if i < len(tokens) and tokens[i] in WRAPPERS:
        later = [j for j in range(i, len(tokens)) if tokens[j] in PYTHONS]
        i = later[0] if later else len(tokens)
    if i < len(tokens) and (tokens[i] in PYTHONS or tokens[i] in {"make", "bash"}):
        return tokens[i:]
    return None


def doc_commands() -> list[tuple[str, list[str]]]:
    """Every checked command of the pages: ("page:line", tokens). Fenced shell blocks, and
    inline `python ...` spans of the prose."""
    found = []
    for page in PAGES:
        text, name = page.read_text(), page.relative_to(REPO)
        for first, body in _fenced_blocks(text):
            for n, line in _logical_lines(first, body):
                if not PROGRAM_WORD.search(line):
                    continue  # not a command (a folder tree, output)
                for tokens in _simple_commands(line, f"{name}:{n}"):
                    if (program := _program(tokens)) is not None:
                        found.append((f"{name}:{n}", program))
        for m in INLINE_COMMAND.finditer(text):
            n = text[: m.start()].count("\n") + 1
            line = m.group(1).replace("\n", " ")
            # `teachers.extract --split=test` in prose: a module run with python -m.
            line = line if PROGRAM_WORD.search(line) else "python -m " + line
            for tokens in _simple_commands(line, f"{name}:{n}"):
                if (program := _program(tokens)) is not None:
                    found.append((f"{name}:{n}", program))
    return found


def usage_commands() -> list[tuple[str, list[str]]]:
    """The usage lines of the code's docstrings and comments (`python -m avkd_jax.main
    --config=...` on a line of its own, in avkd_jax/, teachers/, benchmarks/, configs/)."""
    found = []
    files = [
        p
        for d in ("avkd_jax", "teachers", "benchmarks", "configs")
        for p in (REPO / d).rglob("*.py")
    ]
    for path in sorted(files):
        lines = path.read_text().replace("\\\\\n", "\\\n").splitlines()
        for n, line in _logical_lines(1, "\n".join(lines)):
            line = line.lstrip("# ")
            if "`" in line or not re.match(r"(?:\.venv/bin/)?python3? ", line):
                continue  # prose that names a command, not a command line
            for tokens in _simple_commands(line, f"{path.relative_to(REPO)}:{n}"):
                if (program := _program(tokens)) is not None:
                    found.append((f"{path.relative_to(REPO)}:{n}", program))
    return found


# ---------------------------------------------------------------- what the code defines


def _module_file(module: str) -> pathlib.Path | None:
    base = REPO / module.replace(".", "/")
    for path in (base.with_suffix(".py"), base / "__main__.py", base / "__init__.py"):
        if path.is_file():
            return path
    return None


@functools.cache
def _tree(path: pathlib.Path) -> ast.Module:
    return ast.parse(path.read_text(), str(path))


def _repo_imports(path: pathlib.Path) -> set[pathlib.Path]:
    """The repository's modules `path` imports (its flags register when they load)."""
    out = set()
    for node in ast.walk(_tree(path)):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            if name.split(".")[0] in {"avkd_jax", "teachers", "benchmarks"}:
                if (file := _module_file(name)) is not None:
                    out.add(file)
    return out


def _literal_strings(node, tree: ast.Module) -> list[str] | None:
    """A literal list of values, or a module-level NAME = (...) it names; None if neither."""
    if isinstance(node, ast.Name):
        assigned = [
            n.value
            for n in tree.body
            if isinstance(n, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == node.id for t in n.targets)
        ]
        node = assigned[-1] if assigned else node
    try:
        value = ast.literal_eval(node)
    except ValueError:
        return None
    return list(value) if isinstance(value, (list, tuple)) else None


@functools.cache
def program_flags(entry: pathlib.Path) -> dict:
    """{flag name: allowed values or None} of a program: absl's `flags.DEFINE_*` in the
    entry file and every repository module it imports (transitively), argparse's
    `add_argument("--x")` in the entry file (and, for a `__main__.py`, the modules it
    imports). `config_files` lists the names defined by `DEFINE_config_file`."""
    absl_files, todo = set(), [entry]
    while todo:
        path = todo.pop()
        if path not in absl_files:
            absl_files.add(path)
            todo += _repo_imports(path)
    argparse_files = {entry} | (_repo_imports(entry) if entry.name == "__main__.py" else set())
    defined, config_files, is_absl, default_config = {}, set(), False, None
    for path in absl_files | argparse_files:
        for node in ast.walk(_tree(path)):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            attr, args = node.func.attr, node.args
            if path in absl_files and attr.startswith("DEFINE_") and args:
                if not isinstance(args[0], ast.Constant):
                    continue
                name, is_absl = args[0].value, True
                defined[name] = (
                    _literal_strings(args[2], _tree(path)) if attr == "DEFINE_enum" else None
                )
                if attr in {"DEFINE_bool", "DEFINE_boolean"}:
                    defined["no" + name] = None
                if attr == "DEFINE_config_file":
                    config_files.add(name)
            elif path in argparse_files and attr == "add_argument":
                keywords = {k.arg: k.value for k in node.keywords}
                choices = keywords.get("choices")
                for a in args:
                    if isinstance(a, ast.Constant) and str(a.value).startswith("--"):
                        name = a.value[2:]
                        defined[name] = choices and _literal_strings(choices, _tree(path))
                        defined.update(dict.fromkeys(ARGPARSE_BUILTINS))
                        action = keywords.get("action")
                        if getattr(action, "attr", None) == "BooleanOptionalAction":
                            defined["no-" + name] = None
                        if name == "config" and "default" in keywords:
                            # e.g. str(REPO / "configs" / "synthetic.py"): the file's name.
                            default_config = next(
                                f"configs/{c.value}"
                                for c in ast.walk(keywords["default"])
                                if isinstance(c, ast.Constant) and str(c.value).endswith(".py")
                            )
    if is_absl:
        defined.update({k: None for k in ABSL_BUILTINS if k not in defined})
    # Scripts that hand the arguments after `--` to every `python -m avkd_jax.main` call.
    source = entry.read_text()
    forwards = "avkd_jax.main" in source and 'index("--")' in source
    return {
        "flags": defined,
        "config_files": config_files,
        "forwards_to_main": forwards,
        "default_config": default_config,
    }


@functools.cache
def _config(path: pathlib.Path) -> ConfigDict:
    spec = importlib.util.spec_from_file_location(f"docs_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def _parse_overrides(config_file: pathlib.Path, overrides: list[str]):
    """`--config=FILE` and its overrides parsed as main.py parses them (locked config, on
    a private FlagValues): unknown fields and ill-typed values raise."""
    values = flags.FlagValues()
    argv = ["prog", f"--config={config_file}", *overrides]
    config_flags.DEFINE_config_file(
        "config", None, "", flag_values=values, lock_config=True, sys_argv=argv
    )
    values(argv)
    return values.config


@functools.cache
def _makefile() -> tuple[set[str], set[str]]:
    text = (REPO / "Makefile").read_text()
    targets = set()
    for m in re.finditer(r"^([\w. $()/-]+?)\s*:(?!=)", text, re.M):
        targets.update(m.group(1).split())
    variables = set(re.findall(r"^(\w+)\s*[?:+]?=", text, re.M))
    return targets, variables


# ------------------------------------------------------------------------------ checks


def _is_placeholder(text: str) -> bool:
    return bool(PLACEHOLDER.search(text))


def check_command(tokens: list[str]) -> list[str]:
    """What is wrong with one command (empty: nothing)."""
    tokens = [t.strip("[]") for t in tokens]
    tokens = [t for t in tokens if t and not re.fullmatch(r"\.\.\.|…", t)]
    problems = [
        f"no such path {p!r}"
        for t in tokens
        for p in REPO_PATH.findall(t)
        if not _is_placeholder(p) and not (REPO / p).exists()
    ]
    program, args = tokens[0], tokens[1:]
    if program == "make":
        targets, variables = _makefile()
        for a in args:
            name, is_assignment, _ = a.partition("=")
            if a.startswith("-"):
                continue
            if is_assignment and name not in variables:
                problems.append(f"the Makefile has no variable {name}")
            elif not is_assignment and a not in targets:
                problems.append(f"the Makefile has no target {a!r}")
        return problems
    if program == "bash":
        return problems  # its script's path is checked above
    if args[:1] == ["-m"]:
        module, args = args[1], args[2:]
        if module in EXTERNAL_MODULES:
            return problems
        entry = _module_file(module)
        if entry is None:
            return problems + [f"no module {module!r} in the repository"]
    else:
        entry = REPO / args[0]
        if not entry.is_file():
            return problems + [f"no script {args[0]!r}"]
        args = args[1:]
    defined = program_flags(entry)
    if "--" in args and defined["forwards_to_main"]:
        args, passed = args[: args.index("--")], args[args.index("--") + 1 :]
        given = [a.partition("=")[2] for a in args if a.startswith("--config=")]
        config = (given or [defined["default_config"]])[0]
        # The script gives every run its own --workdir.
        main = ["python", "-m", "avkd_jax.main", f"--config={config}", "--workdir=<run>", *passed]
        problems += [f"after --: {p}" for p in check_command(main)]
    if entry == REPO / "avkd_jax" / "main.py":
        # main.py's own rule: only --mode=prepare and --mode=summary run without a workdir.
        mode = ([a[7:] for a in args if a.startswith("--mode=")] or ["train"])[-1]
        # A bare `python -m avkd_jax.main` in prose names the program; it is no command.
        has_workdir = any(a.startswith("--workdir") for a in args)
        if args and mode not in {"prepare", "summary"} and not has_workdir:
            problems.append(f"--mode={mode} needs --workdir")
    config_file, overrides = None, []
    for a in args:
        if not a.startswith("--"):
            continue
        name, has_value, value = a[2:].partition("=")
        root = name.split(".")[0]
        if "." in name and root in defined["config_files"]:
            overrides.append(a)
        elif name not in defined["flags"]:
            problems.append(f"{entry.relative_to(REPO)} defines no flag --{name}")
        elif (allowed := defined["flags"][name]) and has_value and not _is_placeholder(value):
            if value not in allowed:
                problems.append(f"--{name}={value}: not one of {allowed}")
        if name in defined["config_files"] and not _is_placeholder(value):
            config_file = REPO / value
    if overrides and config_file is None:
        if not any(a.startswith("--config=") for a in args):
            problems.append(f"config overrides without --config=FILE: {overrides}")
        return problems
    if config_file is not None and config_file.is_file():
        config = _config(config_file)
        checkable, missing = [], []
        for a in overrides:
            path, _, value = a[2:].partition("=")
            node = config
            for part in path.split(".")[1:]:
                if not isinstance(node, ConfigDict) or part not in node:
                    missing.append(f"{config_file.relative_to(REPO)} has no field {path}")
                    break
                node = node[part]
            else:
                if not _is_placeholder(value):
                    checkable.append(a)
        problems += missing
        if checkable and not missing:
            try:
                _parse_overrides(config_file, checkable)
            except Exception as e:  # noqa: BLE001  (any parse error is the finding)
                problems.append(f"{checkable}: {type(e).__name__}: {e}")
    return problems


COMMANDS = doc_commands()
USAGE = usage_commands()


def test_the_docs_have_commands_to_check():
    """The extraction finds the docs' commands (it would pass vacuously otherwise)."""
    pages = {where.split(":")[0] for where, _ in COMMANDS}
    assert len(COMMANDS) >= 40, len(COMMANDS)
    assert {"README.md", "docs/data.md", "docs/teachers.md", "docs/evaluation.md"} <= pages
    programs = {tokens[0] for _, tokens in COMMANDS}
    assert {"python", "make"} <= programs


@pytest.mark.parametrize("where,tokens", COMMANDS, ids=[w for w, _ in COMMANDS])
def test_doc_command_runs_as_written(where, tokens):
    problems = check_command(tokens)
    assert not problems, f"{where}: {shlex.join(tokens)}\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("where,tokens", USAGE, ids=[w for w, _ in USAGE])
def test_usage_in_the_code_runs_as_written(where, tokens):
    """The code's docstrings show commands too (`--help` prints some of them)."""
    problems = check_command(tokens)
    assert not problems, f"{where}: {shlex.join(tokens)}\n  " + "\n  ".join(problems)


@pytest.mark.parametrize(
    "command,finding",
    [
        ("python -m avkd_jax.main --config=configs/synthetic.py --nope=1", "no flag --nope"),
        ("python -m avkd_jax.main --config=configs/synthetic.py --mode=fit", "--mode=fit"),
        ("python -m avkd_jax.main --config=configs/synthetic.py --config.nope=1", "no field"),
        (
            "python -m avkd_jax.main --config=configs/synthetic.py --config.model.widht=1",
            "no field",
        ),
        ("python -m avkd_jax.main --config=configs/synthetic.py --config.batch_size=abc", "abc"),
        ("python -m avkd_jax.main --config=configs/nothere.py", "no such path"),
        ("python -m avkd_jax.nothere --x=1", "no module"),
        ("python benchmarks/nothere.py", "no script"),
        ("python benchmarks/repeat.py --config=configs/synthetic.py --seed=5", "no flag --seed"),
        ("python -m teachers.extract --teacher=clip", "not one of"),
        (
            "python benchmarks/repeat.py --config=configs/synthetic.py -- --config.nope=1",
            "after --",
        ),
        ("python benchmarks/ablation.py --seeds=1 -- --config.model.widht=1", "after --"),
        ("python -m avkd_jax.main --config=configs/synthetic.py --mode=eval", "needs --workdir"),
        ("make nothere", "no target"),
        ("make demo WORKDRI=x", "no variable"),
    ],
)
def test_the_checker_finds_problems(command, finding):
    """Each kind of mistake the docs could make is reported."""
    problems = check_command(_program(_simple_commands(command)[0]))
    assert any(finding in p for p in problems), problems


def test_the_checker_passes_good_commands():
    """Placeholders, absl's built-ins, bool negation and a valid override pass."""
    for command in [
        "python -m avkd_jax.main --config=configs/synthetic.py --workdir=<dir> --helpfull",
        "python -m avkd_jax.main --config=... --workdir=... --mode=$MODE",
        "python -m avkd_jax.datasets.report --config=configs/vggs144k.py --nodecode",
        "python -m avkd_jax.main --config=configs/vggs_heard.py --workdir=runs/x"
        " --config.eval_manual_dirs.vggss_unheard_test=/data/x --config.batch_size=64",
        "python -m avkd_jax.datasets.synthetic_world --root=DIR --num_train=N",
        "make demo WORKDIR=runs/x",
        "python benchmarks/eval.py --shapes=synthetic --no-protocol",
        "python benchmarks/ablation.py --seeds=3 -- --config.dataset_kwargs.num_train=480",
    ]:
        assert check_command(_program(_simple_commands(command)[0])) == [], command


CONFIG_MENTION = re.compile(r"(?<![\w.])(?:--)?config\.([a-z_][\w.]*[a-z_0-9])")


def test_config_fields_the_docs_name_exist():
    """Every `config.a.b` / `--config.a.b` the pages mention is a field of some config
    (`config.json` is a file; the troubleshooting table misspells fields on purpose)."""
    from bad_inputs import troubleshooting

    configs = [_config(p) for p in sorted((REPO / "configs").glob("*.py"))]

    def exists(path: str) -> bool:
        for node in configs:
            for part in path.split("."):
                if not isinstance(node, ConfigDict) or part not in node:
                    break
                node = node[part]
            else:
                return True
        return False

    missing, checked = [], 0
    for page in PAGES:
        text = page.read_text()
        if page == troubleshooting.PAGE:
            text = text.replace(troubleshooting.generated_part(text), "")
        for m in CONFIG_MENTION.finditer(text):
            if m.group(1) == "json":
                continue
            checked += 1
            if not exists(m.group(1)):
                line = text[: m.start()].count("\n") + 1
                missing.append(f"{page.relative_to(REPO)}:{line}: config.{m.group(1)}")
    assert checked >= 50, checked
    assert not missing, "\n".join(missing)


# A page, its markdown link target if it is a link's text, and the section named after it.
DOC_REFERENCE = re.compile(r"docs/([\w/]+\.md)(?:\]\([^)]*\))?(?:, ([A-Z][^);:.,(\n`\"]*))?")


def test_references_to_docs_pages_name_pages_and_sections_that_exist():
    """ "docs/X.md" (and "docs/X.md, Section") in the docs, the code and the tests points at
    a page that exists and, when a section is named, at one of its headings."""
    files = [
        REPO / "README.md",
        REPO / "Makefile",
        *PAGES,
        *(p for d in ("avkd_jax", "teachers", "benchmarks", "configs", "tests", "notebooks")
          for p in (REPO / d).rglob("*") if p.suffix in {".py", ".ipynb"}),
    ]  # fmt: skip
    wrong, checked = [], 0
    for path in files:
        if path == pathlib.Path(__file__).resolve():
            continue  # this file's examples
        text = path.read_text()
        for m in DOC_REFERENCE.finditer(text):
            checked += 1
            page, where = REPO / "docs" / m.group(1), f"{path.relative_to(REPO)}:"
            where += str(text[: m.start()].count("\n") + 1)
            if not page.is_file():
                wrong.append(f"{where}: no page docs/{m.group(1)}")
            elif m.group(2):
                section = m.group(2).strip()
                headings = [h.lstrip("#").strip() for h in page.read_text().splitlines()]
                if not any(h.startswith(section) for h in headings if h):
                    wrong.append(f"{where}: docs/{m.group(1)} has no section {section!r}")
    assert checked >= 50, checked
    assert not wrong, "\n".join(wrong)


def test_the_readme_links_every_docs_page():
    """The README's Documentation list links every page under docs/ (a new page too)."""
    readme = (REPO / "README.md").read_text()
    listed = readme[readme.index("## Documentation") :].split("\n## ")[0]
    for page in PAGES[1:]:
        assert f"]({page.relative_to(REPO).as_posix()})" in listed, page
