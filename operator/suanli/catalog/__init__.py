"""Built-in accelerator figures: peak dense TFLOPS per precision, board watts, memory.

Pure data. No I/O, no clock, no environment. Pools may override every figure.
"""
