"""The run loop and what it needs: committing and settling batches, traffic control, the estimate, the lease and the markers."""
