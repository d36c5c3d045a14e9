"""Retry policies, as the server's ``"retry"`` field of a job request takes them."""


def _name(cls_or_name):
    """An exception class as the worker matches it: "module.QualName" (builtins by
    their bare name), or a name given as a string, as is."""
    if isinstance(cls_or_name, str):
        return cls_or_name
    if isinstance(cls_or_name, type) and issubclass(cls_or_name, BaseException):
        if cls_or_name.__module__ == "builtins":
            return cls_or_name.__qualname__
        return f"{cls_or_name.__module__}.{cls_or_name.__qualname__}"
    raise TypeError(f"an exception class or its name, not {cls_or_name!r}")


class Retry:
    """When a job is run again, and how long it waits first.

        pyjobd.Retry(max=5, on=[ConnectionError, "mymod.TransientError"],
                     not_on=[ConnectionRefusedError], initial=1.0, factor=2.0,
                     max_delay=300.0, jitter=True)

    An exception is retried when a class of its MRO is in ``on`` and none in
    ``not_on`` (classes or their names; the worker matches them, by qualified or bare
    name). Crashes of the worker (``on_crash``, default True), timeouts
    (``on_timeout``, default False) and, on PostgreSQL, the loss of the job's node
    (``on_node_lost``, default True) by their switches. Attempt k+1 starts no earlier
    than min(max_delay, initial * factor**(k-1)) seconds after attempt k ended
    (``jitter``: a uniform fraction of that); ``initial=None`` retries at once."""

    def __init__(self, max=3, on=(), not_on=(), *, initial=None, factor=2.0, max_delay=300.0,
                 jitter=False, on_crash=True, on_timeout=False, on_node_lost=True):
        if not isinstance(max, int) or max < 0:
            raise ValueError(f"max must be an integer >= 0, got {max!r}")
        self.max = max
        self.on = [_name(c) for c in on]
        self.not_on = [_name(c) for c in not_on]
        self.initial, self.factor, self.max_delay, self.jitter = initial, factor, max_delay, jitter
        self.on_crash, self.on_timeout, self.on_node_lost = on_crash, on_timeout, on_node_lost

    def to_json(self):
        policy = {"max": self.max, "on_crash": self.on_crash, "on_timeout": self.on_timeout,
                  "on_node_lost": self.on_node_lost}
        if self.on:
            policy["on"] = list(self.on)
        if self.not_on:
            policy["not_on"] = list(self.not_on)
        if self.initial is not None:
            policy["backoff"] = {"initial": self.initial, "factor": self.factor,
                                 "max": max(self.max_delay, self.initial), "jitter": self.jitter}
        return policy

    def __repr__(self):
        return f"Retry({self.to_json()!r})"
