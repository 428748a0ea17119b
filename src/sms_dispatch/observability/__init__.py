"""Seeing the service run: Prometheus metrics, the delivery observer port's no-op, log redaction.

Nothing here is imported by the core except ``observers`` (no third-party imports); the
composition root wires ``metrics.ServiceMetrics`` in.
"""
