"""One module per resource; each exposes `router` (an APIRouter). api.main includes every
module found here, so adding a resource never edits a shared file."""
