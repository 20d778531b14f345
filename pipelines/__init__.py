"""coinflow pipeline stages: ingest → version → validate → features → train → sweep."""
