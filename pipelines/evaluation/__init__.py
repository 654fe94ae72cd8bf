"""What ``multispike evaluate`` measures and writes.

- :mod:`.compute`: accuracy at every step, activity, synaptic operations, energy, latency,
  robustness of the SNN, its QANN, the ANN and the binary SNN of the same QANN;
- :mod:`.report`: the markdown report and ``metrics.json``; :mod:`.plots`: its figures;
- :mod:`.codes`: multi-level against TTFS and binary codes of one QANN;
- :mod:`.neurobench`: the same model through NeuroBench's harness (optional extra);
- :mod:`.avalanche`: residual-stream activity along depth (``multispike avalanche``).
"""
