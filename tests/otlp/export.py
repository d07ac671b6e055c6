#!/usr/bin/env python3
"""Exports known metrics to Tidemark with OpenTelemetry's Python SDK and its
OTLP/HTTP (protobuf) exporter; used by tests/otlp_e2e.rs.

    python3 tests/otlp/export.py <base-url> <tenant>

What it sends (cumulative temporality, the SDK's default), on a resource with
service.name=checkout, service.instance.id=inst-1,
deployment.environment=e2e, from meter "e2e.meter" version "0.1":

* counter "requests" ({request}): GET 5, POST 2
* up-down counter "queue.items" ({item}): 10 - 3 = 7
* observable gauge "room.temperature" (Cel): 21.5 {room=lab}
* histogram "request.duration" (s), buckets 0.1, 0.5, 1: 0.05 0.3 0.7 2.0

Exits 0 only if every export succeeded; 3 if the packages are missing.
"""

import sys

try:
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.metrics import Observation
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import (
        MetricExportResult,
        PeriodicExportingMetricReader,
    )
    from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
    from opentelemetry.sdk.resources import Resource
except ImportError as e:
    print(
        f"export.py: the OpenTelemetry Python packages are missing ({e}); install them with "
        "`python3 -m pip install opentelemetry-sdk opentelemetry-exporter-otlp-proto-http` "
        "(scripts/test.sh does)",
        file=sys.stderr,
    )
    sys.exit(3)


class CheckedExporter(OTLPMetricExporter):
    """Remembers whether any export failed (the SDK only logs failures)."""

    failures = 0
    exports = 0

    def export(self, metrics_data, timeout_millis=10_000, **kwargs):
        result = super().export(metrics_data, timeout_millis=timeout_millis, **kwargs)
        CheckedExporter.exports += 1
        if result != MetricExportResult.SUCCESS:
            CheckedExporter.failures += 1
        return result


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    base, tenant = sys.argv[1].rstrip("/"), sys.argv[2]
    exporter = CheckedExporter(
        endpoint=f"{base}/otlp/v1/metrics",
        headers={"X-Scope-OrgID": tenant},
        compression=Compression.Gzip,
        timeout=10,
    )
    # A long interval: only force_flush and shutdown export.
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    resource = Resource.create(
        {
            "service.name": "checkout",
            "service.instance.id": "inst-1",
            "deployment.environment": "e2e",
        }
    )
    provider = MeterProvider(
        resource=resource,
        metric_readers=[reader],
        views=[
            View(
                instrument_name="request.duration",
                aggregation=ExplicitBucketHistogramAggregation(boundaries=[0.1, 0.5, 1.0]),
            )
        ],
    )
    meter = provider.get_meter("e2e.meter", "0.1")

    requests = meter.create_counter("requests", unit="{request}", description="Requests served.")
    requests.add(5, {"method": "GET"})
    requests.add(2, {"method": "POST"})

    queue = meter.create_up_down_counter("queue.items", unit="{item}", description="Items queued.")
    queue.add(10)
    queue.add(-3)

    def temperature(_options):
        yield Observation(21.5, {"room": "lab"})

    meter.create_observable_gauge(
        "room.temperature", callbacks=[temperature], unit="Cel", description="Room temperature."
    )

    duration = meter.create_histogram("request.duration", unit="s", description="Request latency.")
    for v in (0.05, 0.3, 0.7, 2.0):
        duration.record(v, {"method": "GET"})

    flushed = provider.force_flush(timeout_millis=20_000)
    provider.shutdown()
    if not flushed or CheckedExporter.failures or not CheckedExporter.exports:
        print(
            f"export.py: flushed={flushed} exports={CheckedExporter.exports} "
            f"failures={CheckedExporter.failures}",
            file=sys.stderr,
        )
        sys.exit(1)
    print(f"export.py: {CheckedExporter.exports} exports succeeded")


if __name__ == "__main__":
    main()
