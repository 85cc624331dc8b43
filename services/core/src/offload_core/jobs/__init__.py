"""The job store: the record and its Redis keys, the Lua scripts that move a job between
states, the store as the APIs use it (asyncio) and as workers use it, and the job metrics."""
