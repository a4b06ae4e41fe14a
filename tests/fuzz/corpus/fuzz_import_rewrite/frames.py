def f():
    import a
class C:
    import b
async def g():
    import c
    await c
lam = lambda: __import__('d')
async with x:
    import e
async for y in z:
    import f
await g()
