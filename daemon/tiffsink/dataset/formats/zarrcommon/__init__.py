"""What the two zarr formats share, by composition: the OME-Zarr image group (`ome`), the
shard file format (`shard`), the row codec (`codec`), the array's zarr.json and shard
folders (`array`), the one path for a whole shard (`wholeshard`), the reader (`reader`),
the check (`check`) and the format object each zarr format builds (`format`)."""
