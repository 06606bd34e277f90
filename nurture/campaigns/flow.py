"""The campaign as a diagram: an automatic layered layout of its steps, which nobody positions by hand.

A Sugiyama-style layout over the public format (a draft's data, finished or not): the steps and a start and
an end node are the nodes; where each step leads (the next step, a branch's yes and no, a wait_for's event
and its timeout, a goto) are the edges. The steps are put in layers by the longest path from the start, with
loops (a goto back to an earlier wait) drawn as back edges; an edge that spans several layers gets a bend
point in each, so it is routed between the nodes instead of through them; the order within each layer is
improved by barycenter sweeps to cut crossings. The result is plain coordinates for a server-side SVG
(``web/templates/_flow_diagram.html``). A target that names no step is drawn as a "missing" node.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nurture.campaigns.describe import step_summary
from nurture.campaigns.editing import steps_of

NODE_WIDTH = 220
NODE_HEIGHT = 58
GAP_X = 40
GAP_Y = 46
MARGIN = 20
SWEEPS = 6
START = "__start__"
END = "__end__"


@dataclass
class FlowNode:
    id: str
    kind: str  # a step type, "start", "end" or "missing"
    label: str
    summary: str
    index: int | None = None  # the step's position in the list (None: not a step)
    layer: int = 0
    order: float = 0
    x: int = 0
    y: int = 0
    dummy: bool = False
    # The barycenter of the node's neighbours in the layer swept from.
    weight: float = 0

    @property
    def cx(self) -> int:
        return self.x + NODE_WIDTH // 2

    @property
    def bottom(self) -> int:
        return self.y + (0 if self.dummy else NODE_HEIGHT)


@dataclass
class FlowEdge:
    source: str
    target: str
    label: str = ""
    # "next", "yes", "no", "goto"
    kind: str = "next"
    back: bool = False
    points: list[tuple[int, int]] = field(default_factory=list)
    # The nodes a forward edge passes through: its source, a bend per layer crossed, its target.
    chain: list[str] = field(default_factory=list, repr=False)

    @property
    def path(self) -> str:
        return " ".join(f"{'M' if n == 0 else 'L'} {x} {y}" for n, (x, y) in enumerate(self.points))

    @property
    def label_at(self) -> tuple[int, int]:
        (x1, y1), (x2, y2) = self.points[0], self.points[1]
        return (x1 + x2) // 2 + 6, (y1 + y2) // 2


@dataclass
class FlowLayout:
    nodes: list[FlowNode]
    edges: list[FlowEdge]
    width: int
    height: int

    @property
    def steps(self) -> list[FlowNode]:
        return sorted((node for node in self.nodes if node.index is not None), key=lambda node: node.index or 0)

    def outgoing(self, node_id: str) -> list[FlowEdge]:
        return [edge for edge in self.edges if edge.source == node_id]


def layout_flow(data: Mapping[str, Any]) -> FlowLayout:
    steps = steps_of(data)
    ids = [str(step.get("id", "")) for step in steps]
    nodes: dict[str, FlowNode] = {START: FlowNode(START, "start", "Start", _entry_words(data))}
    for index, step in enumerate(steps):
        step_id = ids[index]
        nodes[step_id] = FlowNode(step_id, str(step.get("type", "")), step_id, step_summary(step), index=index)
    nodes[END] = FlowNode(END, "end", "End", "the campaign is over for the lead")
    edges = [FlowEdge(START, ids[0] if ids else END)]
    for index, step in enumerate(steps):
        following = ids[index + 1] if index + 1 < len(ids) else END
        edges += _edges_of(ids[index], step, following)
    for edge in edges:
        if edge.target not in nodes:
            missing = f"missing:{edge.target}"
            nodes.setdefault(missing, FlowNode(missing, "missing", edge.target or "?", "no step has this name"))
            edge.target = missing
    _layer(nodes, edges)
    placed = _with_bends(nodes, edges)
    layers = _order(placed, edges)
    width, height = _coordinates(layers)
    _route(placed, edges)
    return FlowLayout([node for node in placed.values() if not node.dummy], edges, width, height)


def _entry_words(data: Mapping[str, Any]) -> str:
    triggers = []
    for trigger in data.get("entry") or []:
        if isinstance(trigger, Mapping) and trigger:
            kind, value = next(iter(trigger.items()))
            shown = "" if isinstance(value, dict | list) or value is None else f" {value}"
            triggers.append(kind.replace("_", " ") + shown)
    return "; ".join(triggers) or "no entry yet"


def _edges_of(step_id: str, step: Mapping[str, Any], following: str) -> list[FlowEdge]:
    kind = step.get("type")
    if kind == "exit":
        return [FlowEdge(step_id, END, "converted" if step.get("as") == "converted" else "exit", "next")]
    if kind == "goto":
        return [FlowEdge(step_id, str(step.get("to") or ""), "go to", "goto")]
    if kind == "branch":
        return [
            FlowEdge(step_id, str(step.get("yes") or following), "yes", "yes"),
            FlowEdge(step_id, str(step.get("no") or following), "no", "no"),
        ]
    if kind == "wait_for":
        event = step.get("event") or "event"
        return [
            FlowEdge(step_id, str(step.get("yes") or following), f"yes · {event}", "yes"),
            FlowEdge(step_id, str(step.get("no") or following), f"no · after {step.get('within') or '?'}", "no"),
        ]
    return [FlowEdge(step_id, following)]


def _layer(nodes: dict[str, FlowNode], edges: list[FlowEdge]) -> None:
    """Longest-path layers over the graph without its back edges (found by a depth-first walk from the
    start, then from any step the start does not reach, in list order)."""
    outgoing: dict[str, list[FlowEdge]] = defaultdict(list)
    for edge in edges:
        outgoing[edge.source].append(edge)
    state: dict[str, int] = {}  # 1: on the walk's path, 2: done
    order: list[str] = []

    def walk(root: str) -> None:
        stack: list[tuple[str, int]] = [(root, 0)]
        state[root] = 1
        while stack:
            node_id, position = stack.pop()
            out = outgoing[node_id]
            if position < len(out):
                stack.append((node_id, position + 1))
                edge = out[position]
                if state.get(edge.target) == 1:
                    edge.back = True
                elif edge.target not in state:
                    state[edge.target] = 1
                    stack.append((edge.target, 0))
            else:
                state[node_id] = 2
                order.append(node_id)

    in_list_order = sorted(nodes.values(), key=lambda n: n.index if n.index is not None else len(nodes))
    for root in [START, *(node.id for node in in_list_order)]:
        if root not in state:
            walk(root)
    for node_id in reversed(order):  # a topological order of the forward edges
        for edge in outgoing[node_id]:
            if not edge.back:
                nodes[edge.target].layer = max(nodes[edge.target].layer, nodes[node_id].layer + 1)
    deepest = max(node.layer for node in nodes.values())
    nodes[END].layer = max(nodes[END].layer, deepest)


def _with_bends(nodes: dict[str, FlowNode], edges: list[FlowEdge]) -> dict[str, FlowNode]:
    """Nodes plus one invisible bend point per layer that a forward edge crosses."""
    placed = dict(nodes)
    for number, edge in enumerate(edges):
        if edge.back:
            continue
        top, bottom = nodes[edge.source].layer, nodes[edge.target].layer
        chain = [edge.source]
        for layer in range(top + 1, bottom):
            bend = f"bend:{number}:{layer}"
            placed[bend] = FlowNode(bend, "bend", "", "", layer=layer, dummy=True)
            chain.append(bend)
        chain.append(edge.target)
        edge.chain = chain
    return placed


def _order(placed: dict[str, FlowNode], edges: list[FlowEdge]) -> list[list[FlowNode]]:
    depth = max(node.layer for node in placed.values()) + 1
    layers: list[list[FlowNode]] = [[] for _ in range(depth)]
    for node in sorted(placed.values(), key=lambda n: (n.index if n.index is not None else -1, n.id)):
        layers[node.layer].append(node)
    for layer in layers:
        for position, node in enumerate(layer):
            node.order = position
    links_up: dict[str, list[str]] = defaultdict(list)
    links_down: dict[str, list[str]] = defaultdict(list)
    for edge in edges:
        for upper, lower in zip(edge.chain, edge.chain[1:], strict=False):
            links_up[lower].append(upper)
            links_down[upper].append(lower)
    for sweep in range(SWEEPS):
        downward = sweep % 2 == 0
        sequence = layers[1:] if downward else list(reversed(layers[:-1]))
        neighbours = links_up if downward else links_down
        for layer in sequence:
            for node in layer:
                linked = [placed[other].order for other in neighbours[node.id]]
                node.weight = sum(linked) / len(linked) if linked else node.order
            layer.sort(key=lambda n: (n.weight, n.order))
            for position, node in enumerate(layer):
                node.order = position
    return layers


def _coordinates(layers: list[list[FlowNode]]) -> tuple[int, int]:
    widest = max(len(layer) for layer in layers)
    width = MARGIN * 2 + widest * NODE_WIDTH + (widest - 1) * GAP_X
    for number, layer in enumerate(layers):
        span = len(layer) * NODE_WIDTH + (len(layer) - 1) * GAP_X
        left = (width - span) // 2
        for position, node in enumerate(layer):
            node.x = left + position * (NODE_WIDTH + GAP_X)
            node.y = MARGIN + number * (NODE_HEIGHT + GAP_Y)
    height = MARGIN * 2 + len(layers) * NODE_HEIGHT + (len(layers) - 1) * GAP_Y
    # Room on the right for loops drawn back up.
    return width + GAP_X, height


def _route(placed: dict[str, FlowNode], edges: list[FlowEdge]) -> None:
    for edge in edges:
        source, target = placed[edge.source], placed[edge.target]
        if edge.back:
            right = max(source.x, target.x) + NODE_WIDTH
            loop_x = right + GAP_X // 2
            edge.points = [
                (source.x + NODE_WIDTH, source.y + NODE_HEIGHT // 2),
                (loop_x, source.y + NODE_HEIGHT // 2),
                (loop_x, target.y + NODE_HEIGHT // 2),
                (target.x + NODE_WIDTH, target.y + NODE_HEIGHT // 2),
            ]
            continue
        chain = [placed[node_id] for node_id in edge.chain]
        points = [(source.cx, source.bottom)]
        for bend in chain[1:-1]:
            points.append((bend.cx, bend.y + NODE_HEIGHT // 2))
        points.append((target.cx, target.y))
        edge.points = points
