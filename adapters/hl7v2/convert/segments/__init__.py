"""The IG's segment maps (`mappings/segments/`): one module per segment, shared by every
message map that meets the segment."""
