"""`scorer collect`: Segment-spec and CRM webhook intake, mapping, identity stitching."""
