"""Mixed precision: layers built under the ``mixed_float16`` policy, output layer float32.

The global policy is set only while the model is built (and put back afterwards); each
layer records its own policy in the config. float16 compute needs a loose tolerance.

TF 1.x has the (experimental) policy API but refuses a global non-``infer`` policy
("The global policy can only be set to a non-infer policy in TensorFlow 2"); a TF 1.15
user passes the policy to each layer instead, so that is what the scenario does there.
TF 1.15 then computes in float16 but writes ``"dtype": "float32"`` into the layer
configs, so a reloaded model runs in float32: the outputs still agree within ATOL.
"""

ATOL = 1e-2
RTOL = 1e-2
POLICY = "mixed_float16"


def _policy_api(keras):
    """(get, set, Policy) for the dtype policy, or raise NotImplementedError."""
    mp = getattr(keras, "mixed_precision", None)
    api = mp
    if getattr(mp, "set_global_policy", None) is None:  # TF 1.14-2.3: experimental API
        api = getattr(mp, "experimental", None)
    getter = getattr(api, "global_policy", None)
    setter = getattr(api, "set_global_policy", None) or getattr(api, "set_policy", None)
    policy_cls = getattr(api, "Policy", None) or getattr(mp, "DTypePolicy", None)
    if getter is None or setter is None:
        raise NotImplementedError("this Keras has no mixed precision policy API")
    return getter, setter, policy_cls


def _model(keras, layer_dtype):
    layers = keras.layers
    kwargs = {} if layer_dtype is None else {"dtype": layer_dtype}
    return keras.Sequential(
        [
            keras.Input(shape=(8,)),
            layers.Dense(16, activation="relu", name="hidden", **kwargs),
            layers.Dense(4, name="logits", **kwargs),
            # The documented pattern: the last layer computes in float32.
            layers.Activation("softmax", dtype="float32", name="probs"),
        ],
        name="mixed_precision",
    )


def build(keras):
    get_policy, set_policy, policy_cls = _policy_api(keras)
    previous = get_policy()
    try:
        set_policy(POLICY)
    except ValueError:
        if policy_cls is None:
            raise
        # TF 1.x: no global mixed policy outside TF 2 behaviour; per-layer policies work.
        return _model(keras, policy_cls(POLICY))
    try:
        return _model(keras, None)
    finally:
        set_policy(previous)


def inputs(np):
    return np.random.RandomState(17).uniform(-1.0, 1.0, size=(12, 8)).astype("float32")
