"""The compute agent's multi-step operations, one module per feature
(snapshot.py, rebuild.py); compute/manager.py calls them from thin RPC
methods and compute/reconcile.py repairs what a crash left of them."""
