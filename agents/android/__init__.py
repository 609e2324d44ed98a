"""Android phones over adb: one host process serves every attached phone as its own device.

``config`` (settings), ``adb`` (subprocess wrapper), ``phone`` (getprop, CPU clusters,
thermal state), ``measure`` (the per-phone Measurer) and ``host`` (discovery loop, one
Agent per phone; ``python -m agents.android.host``).
"""
