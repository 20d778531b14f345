"""The data gate: Great Expectations suites, validation per version, drift report."""
