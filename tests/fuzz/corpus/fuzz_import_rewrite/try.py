try:
    import a
except ImportError as e:
    import b
await b.c()
