>>> x = 1
>>> def f():
...     return 5
>>> f()
