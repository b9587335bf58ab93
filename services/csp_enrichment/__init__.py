"""csp-enrichment: decodes the GBCS header and maps the CSP timing points."""
