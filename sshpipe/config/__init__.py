"""OpenSSH client configuration: lossless parse, ``ssh -G`` resolution, safe edits.

(Under construction: see the config issue.)
"""
