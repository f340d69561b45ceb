"""The Block Storage v3 API subset (Cinder's), served under /volume."""
