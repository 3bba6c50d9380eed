"""Every code sample in docs/*.md and README.md runs, through httpd, as its text says.

The convention is written at the top of docs/index.md: a ```` ```python
title="x.py" ```` block is a handler file, ``<!-- expect: GET /x.py -> 200
"text" -->`` says what to request and what must come back, an optional
```` ```apache title="site.conf" ```` block configures the sample's directory,
and a ```` ```python fragment ```` block is compiled but not run. A sample ends
at the next heading.

One httpd (prefork, one process, so a sample sees the same process from one
request to the next) serves every sample, each in its own directory with its
own database; each sample is one test, named after its file and line.
"""
from __future__ import annotations

import base64
import dataclasses
import html
import json
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode

import pytest

from modpy_safe.testing import (
    CHECKOUT,
    Httpd,
    PostgresServer,
    Response,
    dependency_paths,
    make_tempdir,
    readable_pythonpath,
)

DOCUMENTS = sorted((CHECKOUT / "docs").glob("*.md")) + [CHECKOUT / "README.md"]
DEFAULT_CONF = "PythonHandler modpy_safe.dispatch"
#: Languages shown to the reader and never run (python needs a title or "fragment").
SHOWN = {"apache", "apacheconf", "sh", "shell", "bash", "console", "text", "json", "http",
         "sql", "ini", "markdown", "md", "diff", "toml", "yaml", "csv"}
#: How long an expectation is retried after a file was edited (the reload check interval is 1 s).
RELOAD_TRIES, RELOAD_DELAY = 60, 0.1

_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_HEADING = re.compile(r"^#{1,6}\s")
_EXPECT = re.compile(r"<!--\s*expect:\s*(?P<spec>.*?)\s*-->")
_TITLE = re.compile(r'title="(?P<title>[^"]+)"')
_DB_NAME = re.compile(r"""Database\([^)]*?\bname\s*=\s*["']([A-Za-z0-9_-]+)["']""")


@dataclasses.dataclass
class Block:
    """A fenced code block."""

    doc: Path
    line: int
    lang: str
    info: str
    text: str

    @property
    def title(self) -> str | None:
        found = _TITLE.search(self.info)
        return found["title"] if found else None

    @property
    def where(self) -> str:
        return f"{_rel(self.doc)}:{self.line}"


def _rel(doc: Path) -> str:
    """Name ``doc`` relative to the checkout in messages (as it is when it lies inside)."""
    try:
        return str(doc.relative_to(CHECKOUT))
    except ValueError:
        return str(doc)


@dataclasses.dataclass
class Expect:
    """One ``<!-- expect: ... -->`` comment, parsed."""

    line: int
    method: str
    path: str
    body: bytes | None
    content_type: str | None
    status: int
    needles: list[str]
    raw: str
    headers: dict[str, str] = dataclasses.field(default_factory=dict)


Step = Block | Expect


@dataclasses.dataclass
class Sample:
    """The files, configuration and expectations under one heading."""

    doc: Path
    line: int
    steps: list[Step] = dataclasses.field(default_factory=list)
    conf: str | None = None

    @property
    def id(self) -> str:
        return f"{self.doc.name}:{self.line}"

    @property
    def slug(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", f"{self.doc.stem}-{self.line}".lower())

    def source(self) -> str:
        return "\n".join(s.text for s in self.steps if isinstance(s, Block))

    def db_names(self) -> list[str]:
        return sorted({"default", *_DB_NAME.findall(self.source())})


def parse_expect(spec: str, line: int) -> Expect:
    """Parse ``METHOD PATH [form:...|json:...|basic:user:password] -> STATUS ["needle" ...]``."""
    left, arrow, right = spec.replace("→", "->").partition("->")
    if not arrow:
        raise ValueError(f"line {line}: expect needs '->' between the request and the status")
    parts = left.strip().split(None, 2)
    if len(parts) < 2 or not parts[1].startswith("/"):
        raise ValueError(f"line {line}: expect starts with a method and a path "
                         f"beginning with '/', e.g. 'GET /hello.py'")
    method, path = parts[0].upper(), parts[1]
    body: bytes | None = None
    content_type: str | None = None
    headers: dict[str, str] = {}
    if len(parts) == 3:
        payload = parts[2].strip()
        if payload.startswith("form:"):
            pairs = parse_qsl(payload[5:], keep_blank_values=True)
            body, content_type = urlencode(pairs).encode(), "application/x-www-form-urlencoded"
        elif payload.startswith("json:"):
            body = json.dumps(json.loads(payload[5:])).encode()
            content_type = "application/json"
        elif payload.startswith("basic:"):
            token = base64.b64encode(payload[6:].encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        else:
            raise ValueError(f"line {line}: a request body starts with 'form:' or 'json:' "
                             "(or 'basic:user:password' for credentials)")
    status_text, _, rest = right.strip().partition(" ")
    if not status_text.isdigit():
        raise ValueError(f"line {line}: '->' is followed by a status code, not {status_text!r}")
    needles = [json.loads(f'"{n}"') for n in re.findall(r'"((?:[^"\\]|\\.)*)"', rest)]
    return Expect(line, method, path, body, content_type, int(status_text), needles, spec,
                  headers)


@dataclasses.dataclass
class Parsed:
    blocks: list[Block]
    samples: list[Sample]
    problems: list[str]


def parse(doc: Path) -> Parsed:
    """Split ``doc`` into fenced blocks and samples, and list what breaks the convention."""
    blocks: list[Block] = []
    samples: list[Sample] = []
    problems: list[str] = []
    current: Sample | None = None
    lines = doc.read_text(encoding="utf-8").splitlines()
    i = 0
    rel = _rel(doc)
    while i < len(lines):
        line = lines[i]
        fence = _FENCE.match(line)
        # CommonMark: a backtick fence's info string has no backtick (else it is inline code).
        if fence and not (fence["fence"][0] == "`" and "`" in fence["info"]):
            marker, info = fence["fence"], fence["info"].strip()
            start = i + 1
            i += 1
            body: list[str] = []
            while i < len(lines):
                closing = lines[i].strip()
                if closing.startswith(marker[0] * len(marker)) and not closing.strip(marker[0]):
                    break
                body.append(lines[i][len(fence["indent"]):] if lines[i].startswith(
                    fence["indent"]) else lines[i])
                i += 1
            lang = info.split()[0].lower() if info else ""
            block = Block(doc, start, lang, info, "\n".join(body) + "\n")
            blocks.append(block)
            runnable = (lang in ("python", "py") and block.title) or (
                lang in ("apache", "apacheconf") and block.title == "site.conf")
            if runnable:
                if current is None:
                    current = Sample(doc, start)
                    samples.append(current)
                if lang in ("apache", "apacheconf"):
                    current.conf = block.text
                else:
                    current.steps.append(block)
            i += 1
            continue
        if _HEADING.match(line):
            current = None
        for found in _EXPECT.finditer(line):
            if current is None:
                problems.append(f"{rel}:{i + 1}: an expect comment with no sample above it "
                                f"under the same heading")
                continue
            try:
                current.steps.append(parse_expect(found["spec"], i + 1))
            except ValueError as exc:
                problems.append(f"{rel}:{exc}")
        i += 1
    for block in blocks:
        where = block.where
        if not block.lang:
            problems.append(f"{where}: a fenced block without a language; say what it is "
                            f"(python title=\"x.py\", python fragment, apache, sh, text, ...)")
        elif block.lang in ("python", "py"):
            title = block.title
            if title is None and "fragment" not in block.info.split():
                problems.append(f"{where}: a python block must be a handler file "
                                f'(```python title="x.py") or marked ```python fragment')
            elif title is not None and ("/" in title or not title.endswith(".py")):
                problems.append(f"{where}: title {title!r} must be a plain file name ending "
                                f"in .py")
        elif block.lang not in SHOWN:
            problems.append(f"{where}: unknown language {block.lang!r}; use one of "
                            f"python, {', '.join(sorted(SHOWN))}")
    for sample in samples:
        if not any(isinstance(s, Expect) for s in sample.steps):
            problems.append(f"{rel}:{sample.line}: a sample without an "
                            f'<!-- expect: GET /x.py -> 200 "..." --> comment')
    return Parsed(blocks, samples, problems)


PARSED = {doc: parse(doc) for doc in DOCUMENTS if doc.exists()}
SAMPLES = [sample for parsed in PARSED.values() for sample in parsed.samples]


# ------------------------------------------------------------- the convention


@pytest.mark.parametrize("doc", list(PARSED), ids=_rel)
def test_every_block_is_a_sample_or_marked(doc: Path) -> None:
    parsed = PARSED[doc]
    assert not parsed.problems, "see the convention in docs/index.md:\n" + "\n".join(
        parsed.problems)


@pytest.mark.parametrize("doc", list(PARSED), ids=_rel)
def test_python_fragments_compile(doc: Path) -> None:
    for block in PARSED[doc].blocks:
        if block.lang in ("python", "py"):
            compile(block.text, block.where, "exec")  # a SyntaxError names the line


def test_the_convention_itself_is_parsed() -> None:
    """The parser finds samples, files, edits and expectations (guards against a no-op)."""
    doc = make_tempdir("modpy_safe-docs-parse-") / "demo.md"
    try:
        doc.write_text(
            "# A\n\n```python title=\"a.py\"\ndef handler(req):\n    return 'one'\n```\n"
            "<!-- expect: GET /a.py -> 200 \"one\" -->\n"
            "```python title=\"a.py\"\ndef handler(req):\n    return 'two'\n```\n"
            "<!-- expect: POST /a.py form:x=%C3%BC -> 200 \"two\" -->\n\n"
            "````markdown\n```python title=\"inner.py\"\n```\n<!-- expect: GET /x -> 1 -->\n"
            "````\n\n# B\n\n```python\nx = 1\n```\n\n```\nbare\n```\n"
            "<!-- expect: GET /b.py -> 200 -->\n",
            encoding="utf-8",
        )
        parsed = parse(doc)
    finally:
        shutil.rmtree(doc.parent, ignore_errors=True)
    (sample,) = parsed.samples
    kinds = [type(s).__name__ for s in sample.steps]
    assert kinds == ["Block", "Expect", "Block", "Expect"]
    post = sample.steps[3]
    assert isinstance(post, Expect) and post.body == b"x=%C3%BC" and post.needles == ["two"]
    assert len(parsed.problems) == 3, parsed.problems  # untitled python, bare fence, stray expect


_MODULES = ("authz_core", "authz_host", "alias", "mime", "dir", "python", "auth_basic",
            "authn_core", "authn_file", "authz_user", "rewrite", "headers", "env", "setenvif")


def apache_syntax_errors(text: str, mpm: str = "event") -> str | None:
    """Run ``apache2 -t`` on ``text`` inside a minimal server config; return the error or None.

    The config loads mod_python and the common modules (and the MPM, unless the text
    loads one itself), so a snippet is checked as a user would paste it.
    """
    import subprocess

    from modpy_safe.testing import APACHE2, free_port

    root = make_tempdir("modpy_safe-apache-t-")
    try:
        loads = "" if re.search(r"^\s*LoadModule\s+mpm_", text, re.M) else (
            f"LoadModule mpm_{mpm}_module /usr/lib/apache2/modules/mod_mpm_{mpm}.so\n")
        loads += "".join(f"LoadModule {name}_module /usr/lib/apache2/modules/mod_{name}.so\n"
                         for name in _MODULES)
        (root / "snippet.conf").write_text(text, encoding="utf-8")
        conf = root / "httpd.conf"
        conf.write_text(
            f'ServerRoot "{root}"\nPidFile "{root}/httpd.pid"\nMutex file:{root} default\n'
            f"{loads}Listen 127.0.0.1:{free_port()}\nServerName 127.0.0.1\n"
            f'ErrorLog "{root}/error.log"\nTypesConfig /etc/mime.types\n'
            f'Include "{root}/snippet.conf"\n')
        result = subprocess.run([APACHE2, "-t", "-f", str(conf)], capture_output=True, text=True)
        if result.returncode == 0:
            return None
        return (result.stdout + result.stderr).replace(str(root / "snippet.conf"), "the block")
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize("doc", list(PARSED), ids=_rel)
def test_apache_blocks_are_valid_httpd_config(doc: Path) -> None:
    """An ``apache`` block is configuration to copy: httpd must accept it as written."""
    errors = []
    for block in PARSED[doc].blocks:
        if block.lang in ("apache", "apacheconf") and "fragment" not in block.info.split():
            error = apache_syntax_errors(block.text)
            if error:
                errors.append(f"{block.where}: {error.strip()}")
    assert not errors, ("apache2 -t rejects (httpd has no end-of-line comments; mark a "
                        "partial block ```apache fragment):\n" + "\n".join(errors))


# ---------------------------------------------------------------- the samples


@pytest.fixture(scope="module")
def docs_site(postgres: PostgresServer) -> Iterator[Httpd]:
    """One httpd serving every sample from its own directory, each with its own databases."""
    root = make_tempdir("modpy_safe-docs-")
    docroot = root / "htdocs"
    docroot.mkdir()
    sections, databases = [], []
    for n, sample in enumerate(SAMPLES):
        (docroot / sample.slug).mkdir()
        options = []
        if "Database(" in sample.source():  # creating a database costs a fraction of a second
            dbname = f"docs_{n}"
            postgres.admin_execute(f"CREATE DATABASE {dbname} OWNER {postgres.role}")
            databases.append(dbname)
            dsn = (f"host=127.0.0.1 port={postgres.port} dbname={dbname} "
                   f"user={postgres.role} password={postgres.password} "
                   f"application_name=docs-{sample.slug}")
            options = [f'    PythonOption modpy_safe.db.{name}.dsn "{dsn}"'
                       for name in sample.db_names()]
        conf = sample.conf if sample.conf is not None else DEFAULT_CONF
        body = "\n".join("    " + line for line in conf.strip().splitlines())
        sections.append(f'<Directory "{docroot / sample.slug}">\n{body}\n'
                        + "\n".join(options) + "\n</Directory>\n")
    # What a sample with 'AuthType Basic' and 'Require valid-user' needs.
    modules = "".join(f"LoadModule {name}_module /usr/lib/apache2/modules/mod_{name}.so\n"
                      for name in ("authn_core", "authz_user", "auth_basic"))
    httpd = Httpd(root / "httpd", mpm="prefork", processes=1, docroot=docroot,
                  extra=modules + "\n".join(sections), purpose="the documentation's samples")
    try:
        httpd.start()
        yield httpd
    finally:
        httpd.stop()
        for dbname in databases:
            postgres.admin_execute(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")
        shutil.rmtree(root, ignore_errors=True)


def _request(httpd: Httpd, sample: Sample, step: Expect) -> Response:
    headers = {"Content-Type": step.content_type} if step.content_type else {}
    headers.update(step.headers)
    # Non-ASCII in a path is sent percent-encoded (UTF-8), as a browser does.
    path = quote(f"/{sample.slug}{step.path}", safe="/?&=%:;+,@!$'()*~")
    return httpd.request(step.method, path, body=step.body,
                         headers=headers)


def _meets(resp: Response, step: Expect) -> bool:
    # Compared with what a reader sees too: an HTML page writes ' as &#x27;.
    seen = (resp.text, html.unescape(resp.text))
    return resp.status == step.status and all(any(n in t for t in seen) for n in step.needles)


@pytest.mark.httpd
@pytest.mark.parametrize("sample", SAMPLES, ids=[s.id for s in SAMPLES])
def test_sample_runs(sample: Sample, docs_site: Httpd) -> None:
    httpd = docs_site
    written: set[str] = set()
    edited = False
    for step in sample.steps:
        if isinstance(step, Block):
            assert step.title is not None
            edited = edited or step.title in written
            httpd.write(f"{sample.slug}/{step.title}", step.text)
            written.add(step.title)
            continue
        tries = RELOAD_TRIES if edited else 1
        resp = _request(httpd, sample, step)
        for _ in range(tries - 1):
            if _meets(resp, step):
                break
            time.sleep(RELOAD_DELAY)
            resp = _request(httpd, sample, step)
        assert _meets(resp, step), (
            f"{_rel(sample.doc)}:{step.line}: expected {step.raw!r}, got "
            f"{resp.status} {resp.reason}:\n{resp.text[:1500]}\n{httpd.log_tail(30)}"
        )
        edited = False


# ------------------------------------------------------- apache/examples/*.conf

EXAMPLES = sorted((CHECKOUT / "apache" / "examples").glob("*.conf"))
EXAMPLE_ROOT = "/srv/notes"
EXAMPLE_DSN = "host=127.0.0.1 dbname=notes user=notes password=change-me application_name=notes"


def _example_text(path: Path, root: Path) -> str:
    """The example with its /srv/notes paths pointing at a real copy under ``root``."""
    text = path.read_text(encoding="utf-8")
    # The package where httpd's user can read it (a copy when the checkout is private),
    # and its PyPI dependencies, which 'pip install --target /srv/notes/lib' puts beside it.
    lib = [readable_pythonpath(root), *dependency_paths(root)]
    text = text.replace(f"'{EXAMPLE_ROOT}/lib'", ", ".join(map(repr, lib)))
    return text.replace(EXAMPLE_ROOT, str(root))


def _example_tree() -> Path:
    from fix_notes import copy_handlers

    root = make_tempdir("modpy_safe-examples-")
    for name in ("app", "pages"):
        (root / name).mkdir()
    copy_handlers(root / "handlers")
    return root


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_example_config_is_valid_httpd_config(example: Path) -> None:
    """``apache2 -t`` accepts the file inside a minimal server config (its MPM's, if any)."""
    mpm = example.stem.split("-", 1)[1] if example.stem.startswith("mpm-") else "event"
    root = _example_tree()
    try:
        error = apache_syntax_errors(_example_text(example, root), mpm)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    assert error is None, f"{example.name} under {mpm}:\n{error}"


def test_notes_site_example_matches_what_make_run_serves() -> None:
    from fix_notes import load_serve

    directory, _, extra = load_serve().site_config(Path(f"{EXAMPLE_ROOT}/handlers"), "x")
    example = (CHECKOUT / "apache" / "examples" / "notes-site.conf").read_text()
    lines = [line.strip() for line in example.splitlines()]
    position = 0
    for wanted in (directory + extra).splitlines():
        if not wanted.strip():
            continue
        assert wanted.strip() in lines[position:], (
            f"notes-site.conf lacks (or misorders) {wanted.strip()!r} from serve.site_config")
        position = lines.index(wanted.strip(), position) + 1


@pytest.mark.httpd
def test_notes_site_example_serves_the_board(postgres: PostgresServer) -> None:
    """Copied as it is (paths and DSN aside), notes-site.conf serves the whole board."""
    root = _example_tree()
    dbname = "docs_example_site"
    postgres.admin_execute(f"CREATE DATABASE {dbname} OWNER {postgres.role}")
    dsn = (f"host=127.0.0.1 port={postgres.port} dbname={dbname} user={postgres.role} "
           f"password={postgres.password} application_name=docs-example")
    conf = _example_text(CHECKOUT / "apache" / "examples" / "notes-site.conf", root)
    assert EXAMPLE_DSN in conf
    httpd = Httpd(root / "httpd", mpm="event", docroot=root / "handlers", preload=False,
                  extra=conf.replace(EXAMPLE_DSN, dsn), purpose="notes-site.conf")
    try:
        httpd.start()
        created = httpd.request("POST", "/api/notes", body=json.dumps({"text": "Grüße"}),
                                headers={"Content-Type": "application/json"})
        assert created.status == 201, created.text + httpd.log_tail()
        page = httpd.get("/")
        assert page.status == 200 and "Grüße" in page.text, page.text + httpd.log_tail()
        assert httpd.get("/health").json()["notes"] == 1
        assert httpd.get("/board.py").status == 403
        status = httpd.get("/status?format=json")
        assert status.status == 200, status.text
        assert "change-me" not in status.text and postgres.password not in status.text
    finally:
        httpd.stop()
        postgres.admin_execute(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")
        shutil.rmtree(root, ignore_errors=True)


# ------------------------------------------------------------------- links

_LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")


def _anchors(doc: Path) -> set[str]:
    """GitHub's anchors for the headings of ``doc`` (not for '#' lines inside code)."""
    found = set()
    fence = ""
    for line in doc.read_text(encoding="utf-8").splitlines():
        opened = _FENCE.match(line)
        if opened and (not fence or opened["fence"].startswith(fence)):
            fence = "" if fence else opened["fence"]
            continue
        if not fence and _HEADING.match(line):
            title = line.lstrip("#").strip().lower()
            found.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return found


@pytest.mark.parametrize("doc", list(PARSED), ids=_rel)
def test_links_between_documents_resolve(doc: Path) -> None:
    """Every relative link points at a file that exists (and a heading that exists)."""
    text = doc.read_text(encoding="utf-8")
    # Links inside code blocks are examples, not links.
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    broken = []
    for found in _LINK.finditer(text):
        target = found["target"]
        if re.match(r"^[a-z]+:", target):
            continue  # http:, https:, mailto:
        path, _, anchor = target.partition("#")
        resolved = (doc.parent / path).resolve() if path else doc
        if not resolved.exists():
            broken.append(f"{target} (no {resolved})")
        elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
            broken.append(f"{target} (no heading #{anchor} in {resolved.name})")
    assert not broken, f"{_rel(doc)} links to:\n" + "\n".join(broken)
