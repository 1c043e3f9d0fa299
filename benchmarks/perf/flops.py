"""FLOP counting for the performance benchmarks.

Two counts, kept apart on purpose:

* *useful* FLOPs, :func:`forward_flops`: what the maths needs, counted
  analytically from the Keras layer shapes (Conv2D and Dense:
  ``2 · k_h · k_w · C_in · C_out · H_out · W_out`` per sample; Conv2DTranspose
  the same with the *input* size, since a strided transposed convolution
  reaches each output position with only part of its kernel; grouped
  convolutions divided by the groups; pooling, resizing, activations and
  bias additions are not counted);
* *executed* FLOPs, :func:`graph_flops`: the convolutions and matmuls that a
  traced TensorFlow graph really contains (forward, input-gradient and
  filter-gradient kernels), read from the graph's ops and their static shapes,
  loop bodies multiplied by their trip counts.

Their ratio says how much work an implementation does that the maths does
not ask for.
"""

from __future__ import annotations

import math

import keras

_COUNTED = ("Conv2D", "Conv2DTranspose", "Dense")


def _static_clone(model: keras.Model, input_shape: tuple) -> keras.Model:
    """The same architecture with a static input shape ``(1, *input_shape)`` (weights not copied)."""
    inputs = keras.Input(batch_shape=(1, *input_shape))
    return keras.models.clone_model(model, input_tensors=inputs)


def layer_flops(layer, input_shape: tuple, output_shape: tuple) -> int:
    """Forward FLOPs of one layer for one sample (0 for layers that are not counted).

    Parameters
    ----------
    layer : keras.layers.Layer
    input_shape, output_shape : tuple of int
        Shapes including the batch axis (of size 1).
    """
    kind = type(layer).__name__
    if kind not in _COUNTED:
        return 0
    if kind == "Dense":
        c_in, c_out = input_shape[-1], layer.units
        return 2 * c_in * c_out * math.prod(output_shape[1:-1])
    kh, kw = layer.kernel_size
    groups = getattr(layer, "groups", 1) or 1
    c_in, c_out = input_shape[-1], layer.filters
    if kind == "Conv2DTranspose":
        # Every *input* position meets the whole kernel (a strided transposed conv
        # reaches each output position with only (k/s)² of its taps).
        h, w = input_shape[1], input_shape[2]
    else:
        h, w = output_shape[1], output_shape[2]
    return 2 * kh * kw * (c_in // groups) * c_out * h * w


def forward_flops(model: keras.Model, input_shape: tuple) -> int:
    """Useful forward FLOPs of ``model`` on one sample of shape ``input_shape`` (no batch axis).

    Parameters
    ----------
    model : keras.Model
        A functional or sequential model (spatial sizes may be ``None``).
    input_shape : tuple of int
        ``(H, W, C)`` (or ``(C,)`` for dense models) of one sample.

    Returns
    -------
    int
        Sum over Conv2D / Dense layers of ``2 · k_h · k_w · C_in/groups · C_out · H_out · W_out``
        (Dense: ``2 · C_in · C_out`` per output position; Conv2DTranspose: ``H_in · W_in``).
    """
    static = _static_clone(model, tuple(input_shape))
    total = 0
    for layer in static.layers:
        if type(layer).__name__ in _COUNTED:
            total += layer_flops(layer, tuple(layer.input.shape), tuple(layer.output.shape))
    return int(total)


def activation_elements(model: keras.Model, input_shape: tuple) -> int:
    """Elements of all layer outputs for one sample: a rough size of what back-propagation keeps."""
    static = _static_clone(model, tuple(input_shape))
    return int(sum(math.prod(layer.output.shape[1:]) for layer in static.layers if layer.output is not None))


# -- executed FLOPs from a traced graph ------------------------------------------------

def _op_flops(op) -> int:
    t = op.type
    try:
        if t in ("Conv2D", "_FusedConv2D"):
            out, filt = op.outputs[0].shape, op.inputs[1].shape
            kh, kw, cin = filt[0], filt[1], filt[2]
            return 2 * math.prod(out) * kh * kw * cin
        if t in ("Conv2DBackpropInput", "Conv2DBackpropFilter"):
            # Inputs: (input_sizes | input, filter | filter_sizes, out_backprop). Same count as the forward.
            grad = op.inputs[2].shape
            if t == "Conv2DBackpropInput":
                filt = op.inputs[1].shape
                kh, kw, cin = filt[0], filt[1], filt[2]
            else:
                inp = op.inputs[0].shape
                fs = op.outputs[0].shape
                kh, kw, cin = fs[0], fs[1], inp[-1]
            return 2 * math.prod(grad) * kh * kw * cin
        if t in ("MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3"):
            a, out = op.inputs[0].shape, op.outputs[0].shape
            adj = op.get_attr("transpose_a") if t == "MatMul" else op.get_attr("adj_x")
            k = a[-2] if adj else a[-1]
            return 2 * math.prod(out) * k
    except (TypeError, ValueError):  # unknown static shape
        return -1
    return 0


def _live_ops(graph):
    """Ops a function really runs: ancestors of its outputs and control outputs (the runtime prunes
    the rest, e.g. the filter gradients of frozen layers that ``tf.gradients`` builds alongside
    their input gradients). ``None`` (count everything) for a graph without declared outputs."""
    outputs = getattr(graph, "outputs", None)
    if outputs is None:
        return None
    todo = [t.op for t in outputs if t is not None] + list(getattr(graph, "control_outputs", []))
    live = set()
    while todo:
        op = todo.pop()
        if op in live:
            continue
        live.add(op)
        todo.extend(t.op for t in op.inputs)
        todo.extend(op.control_inputs)
    return live


def graph_flops(graph, trips=(), if_fraction: float = 1.0, _depth: int = 0) -> dict:
    """Executed conv/matmul FLOPs of a traced graph, by op type.

    Parameters
    ----------
    graph : tf.Graph or FuncGraph
        E.g. ``tf.function(f).get_concrete_function(*static_specs).graph``;
        shapes must be static for the ops to be counted.
    trips : sequence of int
        Trip counts of ``While`` loops by nesting depth (outermost first);
        missing entries count a loop body once.
    if_fraction : float
        Share of the executions of every ``If`` that take its costlier branch
        (the rest take the other one).

    Returns
    -------
    dict
        ``{op_type: flops}``, plus ``"unknown_shape_ops"``: ops skipped for
        lack of static shapes. Only ops that feed the function's outputs or
        control outputs (e.g. variable updates) are counted: TensorFlow prunes
        the others before running a function.
    """
    out: dict = {}
    live = _live_ops(graph)

    def add(d, mult=1):
        for k, v in d.items():
            out[k] = out.get(k, 0) + (v * mult if k != "unknown_shape_ops" else v)

    for op in graph.get_operations():
        if live is not None and op not in live:
            continue
        if op.type in ("While", "StatelessWhile"):
            body = graph._get_function(op.get_attr("body").name).graph
            mult = trips[_depth] if _depth < len(trips) else 1
            add(graph_flops(body, trips, if_fraction, _depth + 1), mult)
        elif op.type in ("If", "StatelessIf"):
            branches = sorted((graph_flops(graph._get_function(op.get_attr(b).name).graph, trips, if_fraction, _depth)
                               for b in ("then_branch", "else_branch")), key=total)
            add(branches[1], if_fraction)
            add(branches[0], 1.0 - if_fraction)
        elif op.type in ("PartitionedCall", "StatefulPartitionedCall"):
            add(graph_flops(graph._get_function(op.get_attr("f").name).graph, trips, if_fraction, _depth))
        else:
            f = _op_flops(op)
            if f < 0:
                out["unknown_shape_ops"] = out.get("unknown_shape_ops", 0) + 1
            elif f:
                out[op.type] = out.get(op.type, 0) + f
    return out


def total(flops_by_type: dict) -> int:
    """Sum of a :func:`graph_flops` result over op types."""
    return int(sum(v for k, v in flops_by_type.items() if k != "unknown_shape_ops"))
