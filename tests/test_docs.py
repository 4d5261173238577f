"""The README and the documentation site (``docs/``, ``mkdocs.yml``) agree with the code (issue 26 §9, §11).

- The configuration reference is generated (``lgrpo_bench/config/reference.py``): it documents every field of every
  schema, with pydantic's own default and description (checked against pydantic's JSON Schema, an independent
  walk of the same models), and the built site's page holds it.
- Every default the README or a docs page states in words (``task.data_seed`` (default 0), a table with a default
  column) equals the schema's.
- Every ``lgrpo-bench`` command in a code block parses as printed (known subcommand, known options, right number of
  arguments) and its ``--help`` exits 0; every option a commands table names exists on that command.
- The library versions the README cites are the installed ones.
"""

from __future__ import annotations

import html
import importlib.metadata
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from lgrpo_bench.config.reference import SECTION_DEFAULT, FieldDoc, reference, render_markdown, roots

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
sys.path.insert(0, str(DOCS / "hooks"))
from config_reference import expand_markers  # noqa: E402  (docs/hooks is not a package)


def written_pages() -> dict[str, str]:
    """The hand-written markdown: the README and every docs page (markers not expanded)."""
    pages = {"README.md": (ROOT / "README.md").read_text(encoding="utf-8")}
    pages.update({f"docs/{path.name}": path.read_text(encoding="utf-8") for path in sorted(DOCS.glob("*.md"))})
    return pages


# ---------------------------------------------------------------------------------------------- generated reference


def resolve(schema: dict, item: dict) -> dict:
    """A JSON Schema node with its ``$ref`` followed (a nested model's node carries the model's docstring)."""
    while "$ref" in item:
        item = schema["$defs"][item["$ref"].split("/")[-1]]
    return item


def json_schema_fields(schema: dict, node: dict, prefix: str, out: dict[str, list[dict]]) -> None:
    """Every property reachable from ``node`` of a pydantic JSON Schema, by dotted path (the reference's rules:
    ``dict[str, Model]`` → ``<name>``, ``list[Model]`` → ``[]``, a union of models merges their fields)."""
    defs = schema.get("$defs", {})

    def resolve(item: dict) -> dict:
        while "$ref" in item:
            item = defs[item["$ref"].split("/")[-1]]
        return item

    def models_in(item: dict) -> list[dict]:
        item = resolve(item)
        if "properties" in item:
            return [item]
        return [model for option in item.get("anyOf", []) + item.get("oneOf", []) for model in models_in(option)]

    required = set(resolve(node).get("required", []))
    for name, prop in resolve(node).get("properties", {}).items():
        key = f"{prefix}.{name}" if prefix else name
        out.setdefault(key, []).append({**prop, "required": name in required})
        for model in models_in(prop):
            json_schema_fields(schema, model, key, out)
        for option in [prop] + prop.get("anyOf", []):
            option = resolve(option)
            if isinstance(option.get("additionalProperties"), dict):
                for model in models_in(option["additionalProperties"]):
                    placeholder = {"eval.overrides": "<benchmark>", "space": "<dotted key>"}.get(key, "<name>")
                    json_schema_fields(schema, model, f"{key}.{placeholder}", out)
            if option.get("type") == "array" and isinstance(option.get("items"), dict):
                for model in models_in(option["items"]):
                    json_schema_fields(schema, model, f"{key}[]", out)


@pytest.mark.parametrize("root", ["run", "grid", "sweep", "finding"])
def test_the_generated_reference_covers_every_schema_field_with_its_default_and_description(root):
    model = roots()[root]
    schema = model.model_json_schema(by_alias=True)
    expected: dict[str, list[dict]] = {}
    json_schema_fields(schema, schema, "", expected)
    if root == "grid":  # a grid's finding blocks are the finding root's page section
        expected = {key: props for key, props in expected.items() if not key.startswith(("finding.", "findings[]."))}
    rows: dict[str, list[FieldDoc]] = {}
    for row in reference(root):
        rows.setdefault(row.key, []).append(row)
    assert sorted(rows) == sorted(expected), "the reference and the schema disagree on the fields"
    for key, props in expected.items():  # a key of a union (executor.kind) has one row per member
        documented = sorted((row.description, row.default) for row in rows[key])
        assert len(documented) == len(props), key
        for prop in props:
            description = prop.get("description") or ({} if "anyOf" in prop else resolve(schema, prop)).get("description", "")
            described = [default for text, default in documented if text == description.strip()]
            assert described, f"{key}: no row with the schema's description {prop.get('description')!r}"
            if isinstance(prop.get("default"), dict) and SECTION_DEFAULT in described:
                continue  # a nested section: its own fields carry the defaults
            if "default" in prop:
                assert prop["default"] in [literal(default) for default in described], \
                    f"{key}: reference says {described}, schema {prop['default']!r}"
            elif prop["required"]:
                assert described == ["required"], f"{key}: the schema requires it, the reference says {described}"
            else:  # a default_factory (pydantic leaves it out of the JSON Schema): a section's defaults
                assert described == [SECTION_DEFAULT], f"{key}: {described}"


def test_known_defaults_are_rendered_as_yaml():
    rows = {row.key: row for row in reference("run")}
    assert rows["task.data_seed"].default == "0"  # the README once said 1234
    assert rows["train.learning_rate"].default == "3e-05" and rows["eval.gpu_memory_utilization"].default == "0.9"
    assert rows["train.kl_importance_correction"].default == "false"
    assert rows["task.digits"].default == "[2, 3]"
    assert rows["tracking.uri"].default == "null"
    assert rows["eval.overrides.<benchmark>.max_tokens"].unit == "tokens"
    assert rows["train.max_steps"].constraints == "≥ 1"
    grid = {row.key: row for row in reference("grid")}
    assert grid["name"].default == "required" and grid["description"].default == '""'
    assert {row.section for row in reference("grid") if row.key == "executor.slots"} == {"executor (kind: local)"}
    assert grid["executor.array_parallelism"].default == "64"


def test_defaults_are_written_exactly_as_yaml_reads_them():
    from lgrpo_bench.config.reference import yaml_value

    assert yaml_value(1 / 9) == "0.1111111111111111" and float(yaml_value(1 / 9)) == 1 / 9  # no rounding to 0.111111
    assert [yaml_value(value) for value in (1e-6, 5.0, 0, None, False, "", [2, 3], {"k": 1})] == [
        "1e-06", "5.0", "0", "null", "false", '""', "[2, 3]", "{k: 1}"]


def test_the_rendered_tables_hold_one_row_per_field_and_escape_pipes():
    rows = reference("run")
    text = render_markdown(rows)
    table_rows = [line for line in text.splitlines() if line.startswith("| <code>")]
    assert len(table_rows) == len(rows)
    overrides = next(line for line in table_rows if line.startswith("| <code>eval.<wbr>overrides</code>"))
    assert "\\|" not in overrides.split(" | ")[1], "a | inside a code span stays as it is (escaped, it shows)"


def test_the_configuration_page_expands_every_root_and_the_hook_refuses_an_unknown_one():
    page = (DOCS / "configuration.md").read_text(encoding="utf-8")
    expanded = html.unescape(expand_markers(page).replace("<wbr>", ""))
    assert "config-reference:" not in expanded
    for root in roots():
        for row in reference(root):
            assert f"| <code>{row.key}</code> |" in expanded, (root, row.key)
    from mkdocs.exceptions import PluginError

    with pytest.raises(PluginError, match="unknown root 'runs'"):
        expand_markers("<!-- config-reference: runs -->\n")


def test_the_site_builds_strictly_and_its_configuration_page_holds_the_schema(tmp_path):
    site = tmp_path / "site"
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)], cwd=ROOT,
                            capture_output=True, text=True, timeout=300, env={"NO_MKDOCS_2_WARNING": "1",
                                                                              "PATH": str(Path(sys.executable).parent)})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    page = (site / "configuration.html").read_text(encoding="utf-8").replace("<wbr>", "")
    data_seed = re.search(r"<code>task\.data_seed</code></td>\s*<td><code>int</code></td>\s*<td><code>(.*?)</code>", page)
    assert data_seed and data_seed.group(1) == "0"
    dtype = re.search(r"<tr>\s*<td><code>model\.dtype</code></td>(.*?)</tr>", page, re.S).group(1)
    assert dtype.count("<td") == 3 and "\\|" not in dtype and '"auto" | "float32"' in dtype.replace("&quot;", '"')
    assert "\\|" not in page, "a backslash-escaped pipe shows in the page"
    for name in ("index", "getting-started", "commands", "loss", "evaluation", "grids", "clusters", "reports",
                 "findings", "sweeps", "mlflow-schema", "reliability", "measurements", "TESTBED", "layout"):
        assert (site / f"{name}.html").exists(), name


# ---------------------------------------------------------------------------------------------- stated defaults

KEY = r"`(?P<key>[a-z_][a-z0-9_]*(?:\.[a-z0-9_<>\[\]]+)*)`"
DEFAULT_IN_WORDS = re.compile(KEY + r"(?: \(default | \(defaults to | defaults to | default )(?P<value>`[^`]+`|[^\s,;)]+)")
WORDS = {"off": False, "on": True, "false": False, "true": True, "null": None}


def stated_defaults(text: str) -> list[tuple[str, str]]:
    """(key, value) for every default stated in a page: in words after a backticked key, or in a markdown table
    with a ``default`` column whose first cell is one backticked key."""
    found = [(match["key"], match["value"].strip("`")) for match in DEFAULT_IN_WORDS.finditer(text)]
    default_column = None
    for line in text.splitlines():
        if not line.startswith("|"):
            default_column = None
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if default_column is None and "default" in [cell.lower() for cell in cells]:
            default_column = [cell.lower() for cell in cells].index("default")
            continue
        key = re.fullmatch(KEY, cells[0]) if default_column is not None and len(cells) > default_column else None
        if key:
            found.append((key["key"], cells[default_column].strip("`")))
    return found


def schema_rows_for(key: str) -> list[FieldDoc]:
    everything = [row for root in roots() for row in reference(root)]
    exact = [row for row in everything if row.key == key]
    return exact or [row for row in everything if row.name == key]


def literal(value: str):
    """A stated value as a YAML file means it (``3e-5`` and ``20,000`` are numbers, ``off`` is false), or ``...``
    when it is words (``the preset's``) rather than a value."""
    if value.lower() in WORDS:
        return WORDS[value.lower()]
    number = value.replace(",", "")
    if re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", number):
        return int(number) if number.lstrip("+-").isdigit() else float(number)
    if value[:1] in "[{\"'":
        try:
            return yaml.safe_load(value)
        except yaml.YAMLError:
            return ...
    return value  # a plain string (PyYAML would read 24:00:00 as the sexagesimal 86400)


def default_disagreements(text: str) -> list[str]:
    problems = []
    for key, value in stated_defaults(text):
        rows = schema_rows_for(key)
        if not rows:
            continue  # not a config key (a value such as `adam`, a metric, a CLI option)
        stated = literal(value)
        if stated is ... or (isinstance(stated, str) and " " in value):
            continue
        defaults = {row.default for row in rows}
        if len(defaults) > 1:
            problems.append(f"`{key}` is ambiguous ({', '.join(row.key for row in rows)}): write the dotted key")
        elif value != "required" and stated != literal(next(iter(defaults))):
            problems.append(f"`{key}`: stated default {value}, schema {next(iter(defaults))}")
    return problems


def test_every_default_the_readme_and_the_docs_state_is_the_schemas():
    problems = {page: default_disagreements(text) for page, text in written_pages().items()}
    assert not {page: found for page, found in problems.items() if found}
    stated = [claim for text in written_pages().values() for claim in stated_defaults(text)]
    assert ("confidence", "0.95") in stated and ("kl_importance_correction", "off") in stated  # the scanner reads them


@pytest.mark.parametrize("text, complaint", [
    ("`task.data_seed` (default 1234)", "`task.data_seed`: stated default 1234, schema 0"),
    ("| key | default | meaning |\n|---|---|---|\n| `train.max_steps` | 50 | steps |", "`train.max_steps`: stated default 50, schema 40"),
    ("`kl_importance_correction` defaults to on", "`kl_importance_correction`: stated default on, schema false"),
    ("`name` (default tiny-s)", "`name` is ambiguous"),
    ("`eval.gpu_memory_utilization` (default 0.95)", "`eval.gpu_memory_utilization`: stated default 0.95, schema 0.9"),
])
def test_a_wrong_stated_default_is_found(text, complaint):
    assert any(problem.startswith(complaint) for problem in default_disagreements(text)), default_disagreements(text)


def test_right_or_wordy_defaults_pass():
    assert default_disagreements("`task.data_seed` (default 0); `train.learning_rate` default 3e-5; "
                                 "| key | default |\n|---|---|\n| `algorithm.epsilon_low` | preset's |\n"
                                 "`lambda_optimizer`: `adam` (default; λ's own Adam)") == []


# ---------------------------------------------------------------------------------------------- commands as printed


def code_block_commands(text: str) -> list[str]:
    """Every ``lgrpo-bench …`` line of a fenced code block (bash or plain), its comment removed."""
    commands = []
    for block in re.findall(r"```(?:bash|sh|console)?\n(.*?)```", text, re.S):
        for line in block.splitlines():
            line = line.strip().removeprefix("$ ")
            if line.startswith("lgrpo-bench "):
                commands.append(shlex.split(line, comments=True))
    return commands


def click_command():
    import typer.main

    from lgrpo_bench.cli import app

    return typer.main.get_command(app)


def resolve_command(args: list[str]):
    """The click command an argument list names and the arguments left for it. A group's subcommand is always
    written out: ``sweep run FILE``, not the shorthand ``sweep FILE`` the CLI also takes (a typo such as
    ``sweep shwo`` would pass as a file name under the shorthand)."""
    command, path = click_command(), []
    while hasattr(command, "commands") and args and args[0] in command.commands:
        path.append(args[0])
        command, args = command.commands[args[0]], args[1:]
    return command, path, args


def parse_problem(args: list[str]) -> str | None:
    """Why ``lgrpo-bench ARGS`` would not parse (unknown subcommand or option, wrong arguments), or None."""
    while args and args[0] in ("-v", "--verbose"):
        args = args[1:]
    if args == ["--version"]:
        return None
    command, path, rest = resolve_command(args)
    if hasattr(command, "commands"):
        return f"'{' '.join(path) or 'lgrpo-bench'}' has no subcommand {rest[:1]}"
    try:
        command.make_context(" ".join(["lgrpo-bench", *path]), list(rest))
    except Exception as error:  # click's UsageError and its kin (Typer vendors its own click)
        return f"{type(error).__name__}: {error}"
    return None


def test_every_command_in_a_code_block_parses_as_printed_and_its_help_exits_0():
    runner = CliRunner()
    from lgrpo_bench.cli import app

    checked = 0
    for page, text in written_pages().items():
        for args in code_block_commands(text):
            problem = parse_problem(args[1:])
            assert problem is None, f"{page}: {shlex.join(args)}: {problem}"
            _, path, _ = resolve_command(args[1:])
            result = runner.invoke(app, [*path, "--help"])
            assert result.exit_code == 0, f"{page}: {' '.join(path)} --help: {result.output[-500:]}"
            checked += 1
    assert checked >= 10, checked


def test_every_file_a_readme_command_reads_is_in_the_repository():
    """A newcomer copies the README's commands: the grid, run and sweep files they name must exist (the docs pages
    may show a reader's own files, such as experiments/mine.yaml)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    named = [word for args in code_block_commands(readme) for word in args[1:] if word.endswith((".yaml", ".yml"))]
    assert named, "the README shows its main command"
    assert [path for path in named if not (ROOT / path).is_file()] == []


@pytest.mark.parametrize("line, complaint", [
    ("lgrpo-bench run experiments/quickstart.yaml --slotz 2", "No such option"),
    ("lgrpo-bench plan", "Missing parameter: grid_file"),
    ("lgrpo-bench reprot --grid g.yaml", "has no subcommand"),
    ("lgrpo-bench run a.yaml b.yaml", "unexpected extra argument"),
    ("lgrpo-bench sweep shwo lambda-lr", "'sweep' has no subcommand ['shwo']"),
    ("lgrpo-bench sweep sweeps/lambda_lr.yaml", "'sweep' has no subcommand"),
    ("lgrpo-bench sweep run sweeps/lambda_lr.yaml --n-trial 4", "No such option"),
])
def test_a_command_that_would_not_run_as_printed_is_found(line, complaint):
    assert complaint in (parse_problem(shlex.split(line)[1:]) or ""), parse_problem(shlex.split(line)[1:])


def commands_table_rows(text: str) -> list[list[str]]:
    """The backticked spans of each first cell of a table whose header starts with ``command``."""
    rows, in_table = [], False
    for line in text.splitlines():
        if re.match(r"\|\s*command\s*\|", line):
            in_table = True
            continue
        if not line.startswith("|"):
            in_table = False
        elif in_table and not line.startswith("|---"):
            first = re.split(r"(?<!\\)\|", line)[1]
            rows.append(re.findall(r"`([^`]+)`", first))
    return rows


def table_option_problems(spans: list[str]) -> list[str]:
    problems = []
    for span in spans:
        words = span.replace("\\|", "|").split()
        if words[:1] == ["lgrpo-bench"]:
            words = words[1:]
        names = [word for word in words if not word.startswith(("-", "[", "<")) and word.isidentifier()]
        first = names[0] if names else None
        alternatives = [alt for word in words[1:2] for alt in word.split("|")] if first else []
        root = click_command()
        if first not in root.commands:
            if span.startswith("lgrpo-bench --version") or span.startswith("lgrpo-bench -v"):
                continue
            problems.append(f"{span}: unknown command {first}")
            continue
        command = root.commands[first]
        commands = [command]
        if hasattr(command, "commands"):
            commands = [command.commands[alt] for alt in alternatives if alt in command.commands] or [command]
        elif alternatives and all(alt.isidentifier() for alt in alternatives) and len(alternatives) > 1:
            commands = [command]  # `sweep show|export|dashboard`: one command taking the action as an argument
        known = {opt for cmd in commands for param in cmd.params for opt in param.opts + param.secondary_opts}
        known |= {"--help"}
        for option in re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", span):
            if option not in known:
                problems.append(f"{span}: {option} is not an option of {first}")
    return problems


def test_every_option_a_commands_table_names_exists():
    checked = 0
    for page, text in written_pages().items():
        for spans in commands_table_rows(text):
            assert not table_option_problems(spans), (page, table_option_problems(spans))
            checked += 1
    assert checked >= 20, checked


def test_every_command_of_the_cli_is_in_the_commands_page():
    """docs/commands.md documents the whole command line: each command (and each subcommand of a group) starts one of
    its table's code spans."""
    spans = [span.removeprefix("lgrpo-bench ") for spans in commands_table_rows((DOCS / "commands.md").read_text())
             for span in spans]
    root = click_command()
    missing = []
    for name, command in root.commands.items():
        names = [f"{name} {sub}" for sub in command.commands] if hasattr(command, "commands") else [name]
        missing += [full for full in names if not any(span == full or span.startswith(full + " ") for span in spans)]
    assert missing == []


def leaf_commands(command, path: tuple[str, ...] = ()):
    """(path, command) for every command that runs (the subcommands of each group)."""
    if hasattr(command, "commands"):
        for name, sub in command.commands.items():
            yield from leaf_commands(sub, (*path, name))
    else:
        yield path, command


def help_option_problems(path: tuple[str, ...], command) -> list[str]:
    """Options an option's help text names that the command does not have (``status --all`` once said
    "--plain and --json list every run"; status has no --json)."""
    known = {opt for param in command.params for opt in param.opts + param.secondary_opts} | {"--help"}
    named = [(param, option) for param in command.params
             for option in re.findall(r"(?<![\w-])(--[a-zA-Z][\w-]*)", getattr(param, "help", None) or "")]
    return [f"{' '.join(path)} {param.opts[0]}: its help names {option}, which {' '.join(path)} does not have"
            for param, option in named if option not in known]


def test_every_option_an_options_help_names_is_an_option_of_that_command():
    problems = [problem for path, command in leaf_commands(click_command())
                for problem in help_option_problems(path, command)]
    assert problems == []


def test_a_help_naming_an_option_the_command_lacks_is_found():
    import click

    command = click.Command("status", params=[
        click.Option(["--all"], is_flag=True, help="--plain and --json list every run"),
        click.Option(["--plain"], is_flag=True)])
    assert help_option_problems(("status",), command) == [
        "status --all: its help names --json, which status does not have"]


def test_a_commands_table_naming_a_missing_option_is_found():
    assert table_option_problems(["lgrpo-bench plan GRID.yaml [--jsn]"]) == [
        "lgrpo-bench plan GRID.yaml [--jsn]: --jsn is not an option of plan"]
    assert table_option_problems(["lgrpo-bench plan GRID.yaml [--json] [--all]"]) == []


# ---------------------------------------------------------------------------------------------- versions, set-up

LIBRARIES = {"torch": "torch", "transformers": "transformers", "trl": "trl", "mlflow": "mlflow", "lm-eval": "lm_eval",
             "optuna": "optuna"}


def test_the_library_versions_the_readme_cites_are_installed():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    cited = re.findall(r"\b(torch|transformers|TRL|trl|MLflow|mlflow|lm-eval|Optuna|optuna)(?:==| )(\d+\.\d+)", text)
    assert cited, "the README cites at least torch's version (its install command)"
    for library, version in cited:
        installed = importlib.metadata.version(LIBRARIES[library.lower()].replace("_", "-"))
        assert installed.startswith(version), f"README cites {library} {version}, a fresh install has {installed}"
