#!/usr/bin/env apyrun
# A script with top-level await: `apyrun docs/examples/hello.py`.
import asyncio


async def greet(name, delay):
    await asyncio.sleep(delay)
    return f"hello, {name}"


loop = asyncio.get_running_loop()
print(f"running on {type(loop).__module__}.{type(loop).__qualname__}")
for line in await asyncio.gather(greet("world", 0.02), greet("apyrun", 0.01)):
    print(line)
