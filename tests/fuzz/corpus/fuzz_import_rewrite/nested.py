from __future__ import annotations
import a
if a:
    import b
else:
    from c import d
for i in []:
    import e
while 0:
    import f
with x:
    import g
try:
    import h
except* E:
    import i
else:
    import j
finally:
    import k
match v:
    case 1:
        import l
await a.x
