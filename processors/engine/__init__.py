"""The worker engine: claims jobs, runs their processors, renews leases, reaps the dead."""
