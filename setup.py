"""The one compiled part: router.media._rtp_burst (C, optional; pure Python is the fallback)."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "router.media._rtp_burst",
            ["router/media/_rtp_burst.c"],
            extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
            # Without a C compiler the install goes on and the direct path stays in Python.
            optional=True,
        )
    ]
)
