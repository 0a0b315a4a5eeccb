"""Company records: domain normalisation, firmographic files and caching."""
