"""Per-sample gradient statistics of a Flax NNX network at the cost of one backward pass.

For a dense layer `z = a W + b` the gradient of sample `i` is the outer product
`∂ℓ_i/∂W = a_iᵀ δ_i` of the layer's input `a_i` and its backpropagated signal
`δ_i = ∂ℓ_i/∂z_i`. One ordinary backward pass of `Σ_i ℓ_i` with a zero perturbation
added to every layer's output gives all `δ_i` at once; the per-coordinate second
moment is then one more matrix product, `Σ_i (∂ℓ_i/∂W)² = (a∘a)ᵀ(δ∘δ)`, the per-sample
squared norm is `‖a_i‖²‖δ_i‖²` and the derivative along a direction `V` is the row sum
of `(a V)∘δ` — no per-sample gradient is ever formed (Dangel et al., BackPACK, ICLR
2020, do the same in PyTorch). A convolution's per-sample kernel gradient is the
contraction of the input patches with `δ_i` over the output positions.

Every module that owns ``nnx.Param`` entries takes one of these paths, reported in
`GradientStatistics.paths`:

- ``"linear"``: ``nnx.Linear`` on `(n, features)` inputs, called once: the factored
  formulas above;
- ``"linear_per_sample"``: ``nnx.Linear`` on inputs with more axes (or called several
  times): per-sample gradients `Σ_t a_itᵀ δ_it`, formed a chunk of samples at a time;
- ``"conv"``: ``nnx.Conv`` (1-D or 2-D, ``SAME``/``VALID``/explicit padding, strides,
  input and kernel dilation, feature groups): per-sample kernel gradients from the
  input patches, a chunk of samples at a time;
- ``"per_sample"``: any other module with parameters and no parameterised children:
  exact per-sample gradients of that layer alone (``vmap`` of its ``vjp`` at the
  recorded input and signal);
- ``"per_sample_model"``: parameters the above cannot see (owned by a module with
  parameterised children, or used outside a layer's ``__call__``): ``vmap(grad)`` of
  the whole network for those parameters only.

The network must treat samples independently (no batch statistics across samples) and
layers must use their parameters inside ``__call__`` only; the model is evaluated as a
pure function and state updates during the call are discarded.

Numerics: the mean is the exact batch gradient (autodiff). The ``"linear"`` kernel
variance is `(a∘a)ᵀ(δ∘δ)/n − ḡ²`, summed in float32 at the highest matmul precision;
its absolute error is a few float32 ulps of the second moment `C_jj + ḡ_j²`, so the
relative error of `C_jj` is about `10⁻⁷ (1 + ḡ_j²/C_jj)` — below `10⁻⁵` unless the
mean is 30 times the spread (near a minimum `ḡ_j² ≪ C_jj`). Every other path centres
each chunk before squaring and combines chunks with the pairwise (Chan) update.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from flax.nnx.nn.linear import canonicalize_padding

from sdn._checks import pytree_dataclass, static_field
from sdn.train.moments import sample_moments

Params = Any
Loss = Callable[[jax.Array, jax.Array], jax.Array]

_HIGHEST = jax.lax.Precision.HIGHEST
# Per-sample gradients are formed at most this many floats at a time (64 MiB).
_CHUNK_ELEMENTS = 1 << 24


def cross_entropy_losses(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-sample softmax cross-entropy `(n,)` of integer `labels` under `logits` `(n, k)`."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


class NoiseScale(NamedTuple):
    """The gradient noise scale of one batch (McCandlish et al. 2018), unbiased parts.

    With `n` per-sample gradients `g_i`, their mean `ḡ` and
    `V = (1/n) Σ_i ‖g_i − ḡ‖²`: `E V = (n−1)/n · tr C` and `E‖ḡ‖² = ‖G‖² + tr C/n`, so

        trace = n V/(n − 1)  (of tr C),   grad_norm_sq = ‖ḡ‖² − V/(n − 1)  (of ‖G‖² = ‖∇L‖²)

    are unbiased (the plain `‖ḡ‖²` is biased up by `tr C/n`), and `simple = trace /
    grad_norm_sq` is the simple noise scale `B_simple`, a predictor of the critical batch
    size. One batch's `grad_norm_sq` can be negative; average `trace` and `grad_norm_sq`
    over batches (or steps, as exponential moving averages) before dividing.

    Attributes:
      trace: the estimate of `tr C`, the per-sample gradient covariance's trace.
      grad_norm_sq: the estimate of `‖∇L‖²`.
      simple: `trace / grad_norm_sq`.
    """

    trace: jax.Array
    grad_norm_sq: jax.Array
    simple: jax.Array


@pytree_dataclass
class GradientStatistics:
    """Statistics of the per-sample gradients `g_i = ∇ℓ_i(w)` of a batch of `n` samples.

    Attributes:
      mean: `ḡ = (1/n) Σ_i g_i`, the batch gradient, shaped like the parameters.
      variance: `C_jj = (1/n) Σ_i (g_ij − ḡ_j)²`, the population variance per coordinate
        (docs/theory.md §1), shaped like the parameters.
      sample_norms: `(n,)` the norms `‖g_i‖`.
      loss: the mean loss `(1/n) Σ_i ℓ_i`.
      directional: `(n,)` the derivatives `v·g_i` along the direction given, else None.
      path_items: ``((layer path, path taken), …)``; see `paths`.
    """

    mean: Params
    variance: Params
    sample_norms: jax.Array
    loss: jax.Array
    directional: jax.Array | None
    path_items: tuple = static_field(default=())

    @property
    def paths(self) -> dict[str, str]:
        """``{"layers/0": "linear", …}``: how each layer's statistics were computed."""
        return dict(self.path_items)

    @property
    def directional_variance(self) -> jax.Array:
        """`vᵀ C v = (1/n) Σ_i (v·g_i − v·ḡ)²`, the noise along `v` (docs/theory.md §6.1)."""
        if self.directional is None:
            raise ValueError("no direction was given; pass direction= to measure vᵀCv")
        d = self.directional
        return jnp.mean(jnp.square(d - jnp.mean(d)))

    @property
    def noise_scale(self) -> NoiseScale:
        """The unbiased one-batch estimates of `tr C`, `‖∇L‖²` and `B_simple` (`NoiseScale`).

        Needs a batch of `n ≥ 2` (the result is NaN for `n = 1`).
        """
        n = self.sample_norms.shape[0]
        v = sum(jnp.sum(a) for a in jax.tree.leaves(self.variance))
        mean_sq = sum(jnp.vdot(a, a) for a in jax.tree.leaves(self.mean))
        dof = jnp.float32(n - 1) if n > 1 else jnp.float32(jnp.nan)
        trace = n * v / dof
        grad_norm_sq = mean_sq - v / dof
        return NoiseScale(trace, grad_norm_sq, trace / grad_norm_sq)


# ---------------------------------------------------------------------------------------
# Recording layer inputs and adding perturbations to their outputs
# ---------------------------------------------------------------------------------------

_TAPPED: dict[type, type] = {}


def _tapped_class(cls: type) -> type:
    """A subclass of `cls` whose ``__call__`` records its input and adds a perturbation."""
    if cls not in _TAPPED:

        def __call__(self, x, *args, **kwargs):
            tap = self._sdn_tap
            out = cls.__call__(self, x, *args, **kwargs)
            k = len(tap["inputs"])
            tap["inputs"].append(x)
            tap["extra"].append(bool(args or kwargs))
            tap["shapes"].append(jax.ShapeDtypeStruct(out.shape, out.dtype))
            if tap["eps"] is not None:
                out = out + tap["eps"][k].astype(out.dtype)
            return out

        _TAPPED[cls] = type(cls.__name__, (cls,), {"__call__": __call__})
    return _TAPPED[cls]


def _own_params(module: nnx.Module) -> dict[str, nnx.Param]:
    return {k: v for k, v in vars(module).items() if isinstance(v, nnx.Param)}


def _layers(model: nnx.Module) -> dict[tuple, nnx.Module]:
    """Modules that own parameters and have no parameterised descendants, by path."""
    owners = {
        tuple(p): m
        for p, m in nnx.iter_graph(model)
        if isinstance(m, nnx.Module) and _own_params(m)
    }
    return {
        p: m
        for p, m in owners.items()
        if p and not any(q != p and q[: len(p)] == p for q in owners)
    }


def _install_taps(model: nnx.Module, eps: dict | None) -> dict[tuple, dict]:
    taps = {}
    for path, module in _layers(model).items():
        module.__class__ = _tapped_class(type(module))
        eps_k = None if eps is None else eps.get(path)
        tap = {"inputs": [], "extra": [], "shapes": [], "eps": eps_k}
        object.__setattr__(module, "_sdn_tap", tap)
        taps[path] = tap
    return taps


def _get(tree: Any, path: tuple) -> Any:
    for k in path:
        tree = tree[k]
    return tree


def _path_name(path: tuple) -> str:
    return "/".join(str(k) for k in path)


# ---------------------------------------------------------------------------------------
# Which path a layer takes
# ---------------------------------------------------------------------------------------


def _conv_supported(layer: nnx.Conv, x: jax.Array) -> bool:
    ndim = len(layer.kernel_size)
    if ndim not in (1, 2) or x.ndim != ndim + 2 or layer.mask is not None:
        return False
    if layer.conv_general_dilated is not jax.lax.conv_general_dilated:
        return False
    if layer.dtype is not None or layer.preferred_element_type is not None:
        return False
    pad = canonicalize_padding(layer.padding, ndim)
    return not (isinstance(pad, str) and pad not in ("SAME", "VALID"))


def _kind(module: nnx.Module, tap: dict) -> str:
    calls = len(tap["inputs"])
    if calls == 0:
        return "per_sample_model"
    if any(tap["extra"]):
        return "per_sample"
    if type(module).__mro__[1] is nnx.Linear:
        plain = (
            module.dtype is None
            and module.preferred_element_type is None
            and module.dot_general is jax.lax.dot_general
        )
        if not plain:
            return "per_sample"
        if calls == 1 and tap["inputs"][0].ndim == 2:
            return "linear"
        return "linear_per_sample"
    if type(module).__mro__[1] is nnx.Conv:
        return "conv" if all(_conv_supported(module, x) for x in tap["inputs"]) else "per_sample"
    return "per_sample"


# ---------------------------------------------------------------------------------------
# Per-sample gradients of one layer, for a chunk of samples
# ---------------------------------------------------------------------------------------


def _linear_grads(layer: nnx.Module, a: jax.Array, d: jax.Array) -> dict:
    a = a.reshape(a.shape[0], -1, a.shape[-1]).astype(jnp.float32)
    d = d.reshape(d.shape[0], -1, d.shape[-1]).astype(jnp.float32)
    out = {"kernel": jnp.einsum("ntk,nto->nko", a, d, precision=_HIGHEST)}
    if layer.bias is not None:
        out["bias"] = d.sum(1)
    return out


def _conv_grads(layer: nnx.Conv, a: jax.Array, d: jax.Array) -> dict:
    """Per-sample kernel gradients `Σ_p patch_p(a_i)ᵀ δ_ip` (kernel layout `(*k, c/g, o)`)."""
    ndim = len(layer.kernel_size)

    def tup(v):
        return (1,) * ndim if v is None else (v,) * ndim if isinstance(v, int) else tuple(v)

    spatial = "".join("DHW"[-ndim:])
    dn = ("N" + spatial + "C", spatial + "IO", "N" + spatial + "C")
    patches = jax.lax.conv_general_dilated_patches(
        a.astype(jnp.float32),
        filter_shape=layer.kernel_size,
        window_strides=tup(layer.strides),
        padding=canonicalize_padding(layer.padding, ndim),
        lhs_dilation=tup(layer.input_dilation),
        rhs_dilation=tup(layer.kernel_dilation),
        dimension_numbers=dn,
        precision=_HIGHEST,
    )
    n, groups = a.shape[0], layer.feature_group_count
    c_in, k = a.shape[-1], math.prod(layer.kernel_size)
    # The patch features are ordered (channel, *window).
    patches = patches.reshape(n, -1, groups, c_in // groups, k)
    d = d.astype(jnp.float32).reshape(n, -1, groups, d.shape[-1] // groups)
    g = jnp.einsum("npgck,npgo->nkcgo", patches, d, precision=_HIGHEST)
    out = {"kernel": g.reshape(n, *layer.kernel_size, c_in // groups, d.shape[-1] * groups)}
    if layer.bias is not None:
        out["bias"] = d.reshape(n, d.shape[1], -1).sum(1)
    return out


def _layer_vjp_grads(graphdef, rest, params, a: jax.Array, d: jax.Array) -> Params:
    """Exact per-sample gradients of one layer's parameters at its recorded input."""

    def one(ai, di):
        def f(p):
            return nnx.merge(graphdef, p, rest)(ai[None])

        return jax.vjp(f, params)[1](di[None].astype(jax.eval_shape(f, params).dtype))[0]

    return jax.vmap(one)(a, d)


# ---------------------------------------------------------------------------------------
# The statistics
# ---------------------------------------------------------------------------------------


def _check_losses(losses: jax.Array, n: int) -> None:
    if losses.shape != (n,):
        raise ValueError(
            f"loss must return one loss per sample, shape ({n},), got shape {losses.shape}"
        )


# Long on purpose: the closures share the recorded layer inputs of one forward/backward pass.
def batch_gradient_statistics(
    graphdef: nnx.GraphDef,
    params: Params,
    x: jax.Array,
    y: jax.Array,
    *,
    rest: Any = None,
    loss: Loss | None = None,
    direction: Params | None = None,
) -> GradientStatistics:
    """`gradient_statistics` as a pure function of the parameters (jittable, vmappable).

    Args:
      graphdef: the network's graph, from ``nnx.split(model, nnx.Param, ...)``.
      params: its parameters, an ``nnx.State`` or the plain dict of
        ``nnx.to_pure_dict`` (as in `sdn.train.split_model`).
      x, y: the batch, leading axis `n`.
      rest: the network's other state (``nnx.split``'s third part), if any.
      loss: ``loss(outputs, y) -> (n,)`` per-sample losses (default: cross-entropy of
        integer labels).
      direction: `v`, shaped like `params`, to also return `v·g_i`.

    Returns:
      A `GradientStatistics` whose trees have the structure of `params`.
    """
    loss = cross_entropy_losses if loss is None else loss
    pure = nnx.to_pure_dict(params) if isinstance(params, nnx.State) else params
    rest_states = () if rest is None else (rest,)
    n = x.shape[0]
    vdir = None
    if direction is not None:
        vdir = nnx.to_pure_dict(direction) if isinstance(direction, nnx.State) else direction

    def run(p, eps):
        model = nnx.merge(graphdef, p, *rest_states)
        taps = _install_taps(model, eps)
        losses = loss(model(x), y)
        inputs = {k: list(t["inputs"]) for k, t in taps.items()}
        return losses, inputs, taps, model

    # Pass 1 (shapes only): which layers are called, on what, and their outputs' shapes.
    layer_info = {}

    def shapes(p):
        losses, _, taps, model = run(p, None)
        _check_losses(losses, n)
        for k, t in taps.items():
            layer_info[k] = (_kind(_get_module(model, k), t), tuple(t["shapes"]))
        return losses

    jax.eval_shape(shapes, pure)
    eps0 = {
        k: [jnp.zeros(s.shape, s.dtype) for s in info[1]]
        for k, info in layer_info.items()
        if info[0] != "per_sample_model"
    }

    # Pass 2: one backward pass of Σ_i ℓ_i gives Σ_i g_i and every δ_i.
    def total(p, eps):
        losses, inputs, _, _ = run(p, eps)
        return losses.sum(), (losses, inputs)

    (g_sum, deltas), (losses, inputs) = jax.grad(total, (0, 1), has_aux=True)(pure, eps0)
    mean = jax.tree.map(lambda g: g / n, g_sum)
    variance = jax.tree.map(jnp.zeros_like, mean)
    sq_norms = jnp.zeros((n,), jnp.float32)
    dirs = jnp.zeros((n,), jnp.float32)
    plain = nnx.merge(graphdef, pure, *rest_states)
    items = []

    def put(tree, path, value):
        node = _get(tree, path[:-1])
        node[path[-1]] = value

    for path, (kind, _) in sorted(layer_info.items(), key=lambda kv: _path_name(kv[0])):
        items.append((_path_name(path), kind))
        layer = _get_module(plain, path)
        names = sorted(_own_params(layer))
        if kind == "per_sample_model":
            continue
        a_list, d_list = inputs[path], deltas[path]
        v_layer = None if vdir is None else {k: _get(vdir, path + (k,)) for k in names}
        m_layer = {k: _get(mean, path + (k,)) for k in names}
        if kind == "linear":
            var, sq, dd = _linear_factored(a_list[0], d_list[0], m_layer, v_layer)
        else:
            if kind == "per_sample":
                gd, p_l, r_l = nnx.split(layer, nnx.Param, ...)

                def one(a, d, gd=gd, p_l=p_l, r_l=r_l):
                    return nnx.to_pure_dict(_layer_vjp_grads(gd, r_l, p_l, a, d))

            else:
                fn = _conv_grads if kind == "conv" else _linear_grads

                def one(a, d, layer=layer, fn=fn):
                    return fn(layer, a, d)

            def per_sample(a_s, d_s, one=one):  # a layer called k times: Σ of k gradients
                return functools.reduce(
                    lambda g, h: jax.tree.map(jnp.add, g, h), map(one, a_s, d_s)
                )

            size = sum(int(jnp.size(_get(pure, path + (k,)))) for k in names)
            var, sq, dd = _moments(per_sample, (tuple(a_list), tuple(d_list)), n, size, v_layer)
        for k in names:
            put(variance, path + (k,), var[k].astype(_get(mean, path + (k,)).dtype))
        sq_norms = sq_norms + sq
        dirs = dirs + dd

    covered = {
        path + (k,)
        for path, (kind, _) in layer_info.items()
        if kind != "per_sample_model"
        for k in _own_params(_get_module(plain, path))
    }
    leftover = [p for p in _leaf_paths(pure) if p not in covered]
    if leftover:
        items.append(("(other parameters)", "per_sample_model"))
        var, sq, dd = _model_fallback(graphdef, pure, rest_states, x, y, loss, leftover, vdir)
        for p in leftover:
            put(variance, p, var[p])
        sq_norms = sq_norms + sq
        dirs = dirs + dd

    if isinstance(params, nnx.State):
        mean = _as_state(params, mean)
        variance = _as_state(params, variance)
    return GradientStatistics(
        mean=mean,
        variance=variance,
        sample_norms=jnp.sqrt(sq_norms),
        loss=jnp.mean(losses),
        directional=None if vdir is None else dirs,
        path_items=tuple(items),
    )


def _moments(per_sample, args, n: int, size: int, direction):
    """(variance, ‖g_i‖², v·g_i) of per-sample gradients of `size` floats each, formed
    `_CHUNK_ELEMENTS` floats at a time by the shared accumulator."""
    m = sample_moments(per_sample, args, n, _CHUNK_ELEMENTS // max(size, 1), direction)
    return m.variance, m.sq_norms, m.directional


def _get_module(model: nnx.Module, path: tuple) -> nnx.Module:
    for k in path:
        model = model[k] if isinstance(k, int) else getattr(model, k)
    return model


def _leaf_paths(tree: Any, prefix: tuple = ()) -> list[tuple]:
    if isinstance(tree, dict):
        return [p for k, v in tree.items() for p in _leaf_paths(v, prefix + (k,))]
    return [prefix]


def _copy_dicts(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {k: _copy_dicts(v) for k, v in tree.items()}
    return tree


def _as_state(like: nnx.State, pure: dict) -> nnx.State:
    out = jax.tree.map(lambda v: v, like)
    nnx.replace_by_pure_dict(out, pure)
    return out


def _linear_factored(a, d, mean, direction):
    """Variance, ‖g_i‖² and v·g_i of a dense layer from `a` `(n, k)` and `δ` `(n, o)`."""
    n = a.shape[0]
    a = a.astype(jnp.float32)
    d = d.astype(jnp.float32)
    a2, d2 = jnp.square(a), jnp.square(d)
    second = jnp.matmul(a2.T, d2, precision=_HIGHEST) / n
    var = {"kernel": jnp.maximum(second - jnp.square(mean["kernel"].astype(jnp.float32)), 0.0)}
    d_sq = d2.sum(1)
    sq = a2.sum(1) * d_sq
    if "bias" in mean:
        var["bias"] = jnp.mean(jnp.square(d - d.mean(0)), 0)
        sq = sq + d_sq
    dd = jnp.zeros((n,), jnp.float32)
    if direction is not None:
        av = jnp.matmul(a, direction["kernel"].astype(jnp.float32), precision=_HIGHEST)
        dd = jnp.sum(av * d, 1)
        if "bias" in direction:
            dd = dd + d @ direction["bias"].astype(jnp.float32)
    return var, sq, dd


def _model_fallback(graphdef, pure, rest_states, x, y, loss, paths, vdir):
    """`vmap(grad)` of the whole network for the parameters at `paths` only."""

    def sub_loss(sub, xi, yi):
        p = _copy_dicts(pure)
        for path, v in zip(paths, sub):
            _get(p, path[:-1])[path[-1]] = v
        out = nnx.merge(graphdef, p, *rest_states)(xi[None])
        return loss(out, yi[None])[0]

    sub0 = [_get(pure, p) for p in paths]
    grad = jax.vmap(jax.grad(sub_loss), (None, 0, 0))

    def per_sample(xs, ys):
        return grad(sub0, xs, ys)

    v_sub = None if vdir is None else [_get(vdir, p) for p in paths]
    size = sum(int(jnp.size(s)) for s in sub0)
    var, sq, dd = _moments(per_sample, (x, y), x.shape[0], size, v_sub)
    return dict(zip(paths, var)), sq, dd


def gradient_statistics(
    model: nnx.Module,
    x: jax.Array,
    y: jax.Array,
    *,
    loss: Loss | None = None,
    direction: Any = None,
) -> GradientStatistics:
    """Mean, per-coordinate variance and norms of the per-sample gradients of a batch.

    For the per-sample losses `ℓ_i = loss(model(x), y)[i]` of a Flax NNX network, at the
    cost of about one backward pass for dense and convolutional layers (see the module
    docstring for the paths and their numerics):

        ḡ = (1/n) Σ_i ∇ℓ_i,   C_jj = (1/n) Σ_i (∂_j ℓ_i − ḡ_j)²   (docs/theory.md §1)

    Args:
      model: an ``nnx.Module`` mapping a batch `x` to outputs (samples independent).
      x, y: the batch (leading axis `n`) and its targets.
      loss: ``loss(outputs, y) -> (n,)`` per-sample losses; default: softmax
        cross-entropy of integer labels.
      direction: optional `v` (an ``nnx.State`` like ``nnx.state(model, nnx.Param)`` or
        its pure dict) to also return the per-sample `v·g_i`, whose variance is the
        noise along `v`, `vᵀ C v` (`GradientStatistics.directional_variance`).

    Returns:
      A `GradientStatistics`; `mean` and `variance` have the structure of
      ``nnx.state(model, nnx.Param)``.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from sdn.train import MLP
      >>> model = MLP(4, (8,), 3, rngs=nnx.Rngs(0))
      >>> x, y = jnp.ones((16, 4)), jnp.arange(16) % 3
      >>> s = gradient_statistics(model, x, y)
      >>> s.variance["layers"][0]["kernel"].shape, s.sample_norms.shape, s.paths["layers/0"]
      ((4, 8), (16,), 'linear')
    """
    if not isinstance(model, nnx.Module):
        raise TypeError(f"model must be a flax.nnx.Module, got {type(model).__name__}")
    x, y = jnp.asarray(x), jnp.asarray(y)
    if x.ndim < 1 or y.ndim < 1 or x.shape[0] != y.shape[0] or x.shape[0] < 1:
        raise ValueError(
            f"x and y must share a leading sample axis of size >= 1, got shapes "
            f"{x.shape} and {y.shape}"
        )
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    return _jitted(graphdef, loss)(params, rest, x, y, direction)


_JITTED: dict = {}


def _jitted(graphdef, loss):
    key = (graphdef, loss)
    if key not in _JITTED:

        def f(params, rest, x, y, direction):
            return batch_gradient_statistics(
                graphdef, params, x, y, rest=rest, loss=loss, direction=direction
            )

        _JITTED[key] = jax.jit(f)
    return _JITTED[key]
