"""Float64 reference implementations written as plain Python loops, one module per op.

They are deliberately slow and obvious: the kernels are tested against them on tiny shapes.
"""
