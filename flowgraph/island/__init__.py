"""Islands: nodes that run outside the graph's process, behind the same edges.

A node placed on an island (``isolation: process`` in the YAML, the default for heavy CV node types) runs its
unchanged code in a worker process of its own, at a lower OS priority than the graph's process. The graph keeps a
:class:`~flowgraph.island.remote.RemoteNode` in its place: the edges into and out of the node are the graph's
ordinary channels (type, bound, policy, drops and metrics unchanged), and the remote node takes one message at a
time — the worker grants one credit, returned with each answer — so ``latest`` never has more than one frame in
flight, ``block`` backpressures and ``drop_oldest`` drops and counts exactly as on a thread.

Modules:

* :mod:`.placement` — which nodes go to an island (compile time), and the stand-in class the runtime builds;
* :mod:`.transport` — the seam: what a stand-in needs from *some* worker (start, call, close, liveness).
  :mod:`.local` implements it with a local process and a shared-memory frame ring; a Ray actor can implement
  it with the object store;
* :mod:`.frames` — the shared-memory ring and the picklers that move ``VideoFrame`` pixels by one write;
* :mod:`.worker` — the worker process's main loop;
* :mod:`.remote` — the stand-in node, its failure handling and its metrics.
"""
