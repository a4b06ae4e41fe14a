%time y = 1
v = %time 1 + 1
%time await f()
%time
