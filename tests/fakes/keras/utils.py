"""Fake ``keras.utils``: the process-global custom-object registry (as Keras 2 has it)."""

_GLOBAL_CUSTOM_OBJECTS = {}
_GLOBAL_CUSTOM_NAMES = {}


def get_custom_objects():
    return _GLOBAL_CUSTOM_OBJECTS


def register_keras_serializable(package="Custom", name=None):
    """Register a class as ``package>name``; like tf.keras <= 2.12, a second
    registration of the same name is an error."""

    def decorator(arg):
        registered_name = package + ">" + (name or arg.__name__)
        if registered_name in _GLOBAL_CUSTOM_OBJECTS:
            raise ValueError("%s has already been registered to %s"
                             % (registered_name, _GLOBAL_CUSTOM_OBJECTS[registered_name]))
        _GLOBAL_CUSTOM_OBJECTS[registered_name] = arg
        _GLOBAL_CUSTOM_NAMES[arg] = registered_name
        return arg

    return decorator
