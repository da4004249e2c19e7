"""The local control API: typed requests and replies over a unix socket, the server and its waits."""
