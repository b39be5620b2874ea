"""Draw the deployment diagram from compose.yaml: a Mermaid block in README.md and docs/architecture.svg.

Regenerate both after changing compose.yaml (Graphviz's ``dot`` renders the SVG; Debian:
``apt-get install graphviz``)::

    uv run python docs/diagram.py

One description of the stack (:func:`describe`) is written out twice, as Mermaid for the README
(GitHub renders it) and as Graphviz DOT for the SVG, so the two cannot disagree; the SVG carries
the SHA-256 of its DOT source. tests/deploy/test_compose.py checks that the README block and the
SVG are what this script makes of the current compose.yaml.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

__all__ = [
    "ROOT",
    "Diagram",
    "describe",
    "dot_source",
    "load_compose",
    "mermaid_source",
    "readme_block",
    "replace_readme_block",
    "source_digest",
    "svg_with_digest",
]

ROOT = Path(__file__).resolve().parent.parent
START_MARKER = "<!-- diagram:start -->"
END_MARKER = "<!-- diagram:end -->"
_DIGEST_COMMENT = "<!-- dot source sha256: {} -->"

Shape = Literal["client", "service", "store", "job"]


@dataclass(frozen=True)
class Node:
    id: str
    lines: tuple[str, ...]
    shape: Shape


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    label: str = ""


@dataclass(frozen=True)
class Group:
    id: str
    title: str
    members: tuple[str, ...]


@dataclass(frozen=True)
class Diagram:
    nodes: tuple[Node, ...]
    groups: tuple[Group, ...]
    edges: tuple[Edge, ...]


def load_compose(path: Path = ROOT / "compose.yaml") -> dict[str, Any]:
    compose: dict[str, Any] = yaml.safe_load(path.read_text())
    return compose


def _option(command: list[str], name: str) -> str:
    """The value after ``name`` in an exec-form command."""
    return command[command.index(name) + 1]


def describe(compose: dict[str, Any]) -> Diagram:
    """The stack as nodes and edges: clients, the proxy, each API replica, the admin panel, the
    stores, the migration."""
    services = compose["services"]
    proxy, api, admin, migrate = services["proxy"], services["api"], services["admin"], services["migrate"]
    replicas = int(api["deploy"]["replicas"])
    workers = _option(api["command"], "--workers")
    port = _option(api["command"], "--port")
    proxy_address = next(
        network["ipv4_address"] for network in proxy["networks"].values() if network and "ipv4_address" in network
    )
    published = ", ".join(str(mapping).replace(":", " → ") for mapping in proxy["ports"])
    postgres_volume = services["postgres"]["volumes"][0].split(":")[0]
    replica_ids = tuple(f"api{number}" for number in range(1, replicas + 1))

    nodes = [
        Node("clients", ("API clients", "/api/v1"), "client"),
        Node("browsers", ("browsers", "/docs (Scalar, OpenAPI)"), "client"),
        Node("staff", ("shop staff", "/admin/ (Piccolo admin)"), "client"),
        Node("proxy", ("proxy", proxy["image"], f"{proxy_address}, publishes {published}"), "service"),
        *(
            Node(replica, (f"api replica {number}", f"Granian :{port}, {workers} workers"), "service")
            for number, replica in enumerate(replica_ids, start=1)
        ),
        Node("admin", ("admin", f"bookstore admin :{_option(admin['command'], '--port')}, 1 worker"), "service"),
        Node("postgres", ("postgres", services["postgres"]["image"], f"volume {postgres_volume}"), "store"),
        Node("redis", ("redis", services["redis"]["image"], "rate-limit counters"), "store"),
        Node("migrate", ("migrate, one-shot", " ".join(["bookstore", *migrate["command"]])), "job"),
    ]
    edges = [
        Edge("clients", "proxy", "HTTP"),
        Edge("browsers", "proxy", "HTTP"),
        Edge("staff", "proxy", "HTTP"),
        *(Edge("proxy", replica, "round robin" if index == 0 else "") for index, replica in enumerate(replica_ids)),
        *(Edge(replica, "postgres", "SQL" if index == 0 else "") for index, replica in enumerate(replica_ids)),
        *(Edge(replica, "redis", "counters" if index == 0 else "") for index, replica in enumerate(replica_ids)),
        Edge("proxy", "admin", "/admin/*"),
        Edge("admin", "postgres", "books, accounts, sessions"),
        Edge("admin", "redis", "login counters"),
        Edge("migrate", "postgres", "schema, before the API starts"),
    ]
    group = Group("api", f"api: {replicas} replicas of {api['image']}", replica_ids)
    return Diagram(tuple(nodes), (group,), tuple(edges))


_MERMAID_SHAPES: dict[Shape, tuple[str, str]] = {
    "client": ("([", "])"),
    "service": ("[", "]"),
    "store": ("[(", ")]"),
    "job": ("[[", "]]"),
}


def mermaid_source(diagram: Diagram) -> str:
    def node(item: Node) -> str:
        opening, closing = _MERMAID_SHAPES[item.shape]
        return f'{item.id}{opening}"{"<br/>".join(item.lines)}"{closing}'

    grouped = {member for group in diagram.groups for member in group.members}
    lines = ["flowchart LR"]
    lines += [f"    {node(item)}" for item in diagram.nodes if item.id not in grouped]
    for group in diagram.groups:
        lines.append(f'    subgraph {group.id}["{group.title}"]')
        lines += [f"        {node(item)}" for item in diagram.nodes if item.id in group.members]
        lines.append("    end")
    for edge in diagram.edges:
        arrow = f'-->|"{edge.label}"|' if edge.label else "-->"
        lines.append(f"    {edge.source} {arrow} {edge.target}")
    return "\n".join(lines) + "\n"


_DOT_SHAPES: dict[Shape, str] = {
    "client": 'shape=box, style="rounded,filled", fillcolor="#eef3fb"',
    "service": 'shape=box, style="rounded,filled", fillcolor="#fdf6e3"',
    "store": 'shape=cylinder, style=filled, fillcolor="#e8f5e9"',
    "job": 'shape=box, style="dashed,filled", fillcolor="#f5f5f5"',
}


def _dot_text(*lines: str) -> str:
    """A quoted DOT string of ``lines``, one below the other."""
    return '"' + "\\n".join(line.replace("\\", "\\\\").replace('"', '\\"') for line in lines) + '"'


def dot_source(diagram: Diagram) -> str:
    def node(item: Node) -> str:
        return f"{item.id} [label={_dot_text(*item.lines)}, {_DOT_SHAPES[item.shape]}];"

    grouped = {member for group in diagram.groups for member in group.members}
    lines = [
        "digraph bookstore {",
        "    rankdir=LR;",
        '    node [fontname="Helvetica", fontsize=11];',
        '    edge [fontname="Helvetica", fontsize=9];',
    ]
    lines += [f"    {node(item)}" for item in diagram.nodes if item.id not in grouped]
    for group in diagram.groups:
        lines.append(f"    subgraph cluster_{group.id} {{")
        lines.append(f'        label={_dot_text(group.title)}; style="rounded,dashed"; fontname="Helvetica";')
        lines += [f"        {node(item)}" for item in diagram.nodes if item.id in group.members]
        lines.append("    }")
    for edge in diagram.edges:
        label = f" [label={_dot_text(edge.label)}]" if edge.label else ""
        lines.append(f"    {edge.source} -> {edge.target}{label};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def readme_block(diagram: Diagram) -> str:
    """The README's diagram section, markers included."""
    return "\n".join(
        [
            START_MARKER,
            "<!-- Drawn from compose.yaml by `uv run python docs/diagram.py`; edit compose.yaml, not this block. -->",
            "",
            "```mermaid",
            mermaid_source(diagram).rstrip("\n"),
            "```",
            "",
            "The same as an image: [docs/architecture.svg](docs/architecture.svg).",
            END_MARKER,
        ]
    )


def replace_readme_block(readme: str, block: str) -> str:
    """``readme`` with the text from the start marker to the end marker replaced by ``block``."""
    pattern = re.compile(re.escape(START_MARKER) + r".*?" + re.escape(END_MARKER), re.DOTALL)
    if len(pattern.findall(readme)) != 1:
        raise SystemExit(f"README.md must hold exactly one {START_MARKER} … {END_MARKER} block")
    return pattern.sub(lambda _: block, readme)


def source_digest(dot: str) -> str:
    return hashlib.sha256(dot.encode()).hexdigest()


def svg_with_digest(svg: str, dot: str) -> str:
    """Graphviz's SVG with the digest of its DOT source, so a test can tell a stale SVG without Graphviz."""
    header_end = svg.index("?>") + 2 if svg.startswith("<?xml") else 0
    return svg[:header_end] + "\n" + _DIGEST_COMMENT.format(source_digest(dot)) + svg[header_end:]


def _render_svg(dot: str) -> str:
    executable = shutil.which("dot")
    if executable is None:
        raise SystemExit("Graphviz's `dot` is not installed (Debian: apt-get install graphviz)")
    # The input is this script's own DOT text, not anything from outside.
    result = subprocess.run([executable, "-Tsvg"], input=dot, capture_output=True, text=True, check=False)  # noqa: S603 - our own argv (dot from PATH), no shell, no outside input
    if result.returncode != 0:
        raise SystemExit(f"dot failed: {result.stderr}")
    return result.stdout


def main() -> None:
    diagram = describe(load_compose())
    readme_path = ROOT / "README.md"
    readme_path.write_text(replace_readme_block(readme_path.read_text(), readme_block(diagram)))
    dot = dot_source(diagram)
    svg_path = ROOT / "docs" / "architecture.svg"
    svg_path.write_text(svg_with_digest(_render_svg(dot), dot))
    sys.stdout.write(f"Wrote the diagram block of {readme_path.name} and {svg_path.relative_to(ROOT)}.\n")


if __name__ == "__main__":
    main()
