"""Shipping a run: its ONNX export with a parity check (export), the HTTP server over it (serve), and a
self-contained code-submission package (package; its predict.py is runtime.py, which never imports podium).

Sits between commands/ and report/: it reads run folders through podium.run and predicts with podium.engine."""
