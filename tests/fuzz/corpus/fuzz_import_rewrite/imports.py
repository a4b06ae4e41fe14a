import asyncio, os.path as p
from . import x
from ..a.b import (c, d as e)
from m import *
await asyncio.sleep(0)
