x = [1,
!2]
if x:
    !echo in block
d = {
%a: 1}
y = 1 + \
%2
