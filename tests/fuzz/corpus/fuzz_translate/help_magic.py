%ttiXf()
?%time
