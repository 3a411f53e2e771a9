"""Trust: cases from issue 11 (data loss, wrong numbers, crashes, hangs, security)."""
