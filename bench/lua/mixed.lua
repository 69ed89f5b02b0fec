-- Mixed CRUD: 70% read, 15% create, 10% update, 5% search by identifier.
request = function()
  local roll = math.random(100)
  if roll <= 70 then return read_request() end
  if roll <= 85 then return create_request() end
  if roll <= 95 then return update_request() end
  return search_request()
end
