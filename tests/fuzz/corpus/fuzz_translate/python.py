import asyncio
async def f():
    return 1 % 2 != 3
x = await f()
print(f'{x!r}')
