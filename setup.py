"""Install modpy_safe: ``pip install .`` (or ``pip install -e .[test]`` to develop)."""
from setuptools import find_packages, setup

setup(
    name="modpy_safe",
    version="0.1.0",
    description=(
        "Safe module reloading and MPM-aware PostgreSQL connections for Apache mod_python"
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",  # sys.stdlib_module_names; Debian 12 has 3.11
    # The httpd templates live in apache/ in the checkout; an installed copy
    # ships them as modpy_safe.apache_templates for the pytest plugin.
    packages=find_packages(include=["modpy_safe", "modpy_safe.*"]) + ["modpy_safe.apache_templates"],
    package_dir={"modpy_safe.apache_templates": "apache"},
    package_data={"modpy_safe": ["py.typed"], "modpy_safe.apache_templates": ["*.conf.in"]},
    # psycopg2 and psycopg (3) come from the system (python3-psycopg2,
    # python3-psycopg): httpd embeds the system interpreter, so they are not pip
    # requirements here. 'multipart' has no Debian package (Debian's
    # python3-multipart is another project): pip installs it, and httpd finds it
    # through PythonPath (see docs/deploying.md).
    install_requires=["multipart>=1.2"],
    extras_require={
        # pytest-timeout: a test that hangs (a checkout waiting forever) fails
        # alone instead of hanging the run; the limit is set in pyproject.toml.
        "test": ["pytest>=7", "pytest-timeout>=2.1", "selenium>=4.10"],
        "bench": ["DBUtils>=3", "psycopg[binary]>=3.1", "psycopg-pool>=3.1"],
        "lint": ["mypy>=1.5", "ruff>=0.4"],
    },
    entry_points={
        "pytest11": ["modpy_safe = modpy_safe.testing"],
        "console_scripts": ["modpy-safe = modpy_safe.ops.check:main"],
    },
    classifiers=[
        "Framework :: Pytest",
        "Programming Language :: Python :: 3",
        "Topic :: Internet :: WWW/HTTP :: HTTP Servers",
    ],
)
