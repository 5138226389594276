"""The distribution API client every Landfall party that asks registries uses: the credentials
service (test connection, tag -> digest from the control plane) and the data-plane agent (tag ->
digest from inside the cluster, for registries the control plane cannot reach).

`types` is pure (what a call needs and answers); `egress` decides which addresses a call may
reach; `auth` is the transport and the token dance; `client` says what each answer means. Only
`auth`, `client` and `egress` do I/O (aiohttp), so `libs.oci`'s other modules stay pure.
"""
