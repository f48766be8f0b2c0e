"""Parses Prometheus text from stdin with the official `prometheus_client`
parser and prints every sample as JSON: [[name, labels, value], ...].

Run by cli/tests/serve.rs; exits non-zero (reason on stderr) when the text
does not parse or the package is missing: a failure, never a skip.
"""

import json
import sys

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:
    sys.exit(
        "the prometheus_client package is missing: scripts/test.sh installs it "
        "(or: python3 -m pip install prometheus-client)"
    )

samples = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        samples.append([s.name, s.labels, s.value])
json.dump(samples, sys.stdout)
