# datasetjob/worker-tables: the worker runtime plus the table stack (the `tables` extra: pyarrow
# and DuckDB), for Parquet output and the combine (sortBy / dedupeBy sort out of core with DuckDB).
# One layer on top of datasetjob/worker, so a node that has one pulls little for the other.
# Build from the repository root:
#   docker build -f generator-image/tables.Dockerfile --build-arg WORKER_IMAGE=datasetjob/worker:0.1.0 \
#     -t datasetjob/worker-tables:0.1.0 .
ARG WORKER_IMAGE=datasetjob/worker:0.1.0

FROM ${WORKER_IMAGE} AS build
USER 0
# The extra's requirements as the worker's installed metadata names them; into a directory of
# their own (put on the venv's path by a .pth file), so the layer holds only the table stack.
# Dropped from pyarrow: what only builds extensions (headers, Cython sources), its tests, Flight
# (RPC) and its own S3 filesystem (the stores use boto3); pyarrow imports each only on demand.
RUN site=$(python -c 'import sysconfig; print(sysconfig.get_path("purelib"))') \
 && python -c 'from importlib.metadata import requires; print("\n".join(r.split(";")[0] for r in requires("datasetjob") if "extra == \"tables\"" in r))' >/tmp/tables.txt \
 && pip install --no-cache-dir --no-compile --target /out/opt/datasetjob-tables -r /tmp/tables.txt \
 && cd /out/opt/datasetjob-tables \
 && rm -rf pyarrow/include pyarrow/src pyarrow/tests pyarrow/libarrow_flight.so* pyarrow/_flight.* pyarrow/flight.py \
           pyarrow/libarrow_s3.so* pyarrow/_s3fs.* bin \
 && find . \( -name '*.pxd' -o -name '*.pyx' -o -name '*.pxi' -o -name '*.h' -o -name '*.cc' \) -delete \
 && find . -depth -type d \( -name tests -o -name __pycache__ \) -exec rm -rf {} + \
 && python -m compileall -q --invalidation-mode unchecked-hash -d /opt/datasetjob-tables . \
 && mkdir -p "/out$site" \
 && echo /opt/datasetjob-tables >"/out$site/datasetjob-tables.pth"

FROM ${WORKER_IMAGE}
COPY --from=build /out/ /
