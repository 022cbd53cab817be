// Vulkan heatmap renderer: memory types, buffers, images, staging uploads and submission.
#include "vulkan_heatmap_impl.h"  // first: vulkan.h before any Qt header

#include <cstring>
#include <vector>

namespace moelab::views {
using namespace detail;

uint32_t VulkanHeatmapRenderer::Impl::memory_type(uint32_t bits, VkMemoryPropertyFlags want) const {
  for (uint32_t i = 0; i < mem_props.memoryTypeCount; ++i)
    if ((bits & (1u << i)) && (mem_props.memoryTypes[i].propertyFlags & want) == want) return i;
  throw Error(ErrorKind::Internal, "Vulkan: no suitable memory type");
}

Buffer VulkanHeatmapRenderer::Impl::make_buffer(VkDeviceSize size, VkBufferUsageFlags usage) {
  Buffer b;
  b.size = size;
  VkBufferCreateInfo bi{VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO};
  bi.size = size;
  bi.usage = usage;
  bi.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
  check(vkCreateBuffer(device, &bi, nullptr, &b.buffer), "vkCreateBuffer");
  VkMemoryRequirements req;
  vkGetBufferMemoryRequirements(device, b.buffer, &req);
  VkMemoryAllocateInfo ai{VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO};
  ai.allocationSize = req.size;
  ai.memoryTypeIndex = memory_type(req.memoryTypeBits, VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT |
                                                           VK_MEMORY_PROPERTY_HOST_COHERENT_BIT);
  check(vkAllocateMemory(device, &ai, nullptr, &b.memory), "vkAllocateMemory(buffer)");
  check(vkBindBufferMemory(device, b.buffer, b.memory, 0), "vkBindBufferMemory");
  check(vkMapMemory(device, b.memory, 0, VK_WHOLE_SIZE, 0, &b.mapped), "vkMapMemory");
  return b;
}

void VulkanHeatmapRenderer::Impl::free_buffer(Buffer& b) {
  if (b.memory) vkFreeMemory(device, b.memory, nullptr);  // unmaps implicitly
  if (b.buffer) vkDestroyBuffer(device, b.buffer, nullptr);
  b = {};
}

Image VulkanHeatmapRenderer::Impl::make_image(int w, int h, VkFormat format,
                                              VkImageUsageFlags usage, bool red_as_green) {
  Image im;
  VkImageCreateInfo ii{VK_STRUCTURE_TYPE_IMAGE_CREATE_INFO};
  ii.imageType = VK_IMAGE_TYPE_2D;
  ii.format = format;
  ii.extent = {static_cast<uint32_t>(w), static_cast<uint32_t>(h), 1};
  ii.mipLevels = 1;
  ii.arrayLayers = 1;
  ii.samples = VK_SAMPLE_COUNT_1_BIT;
  ii.tiling = VK_IMAGE_TILING_OPTIMAL;
  ii.usage = usage;
  ii.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
  ii.initialLayout = VK_IMAGE_LAYOUT_UNDEFINED;
  check(vkCreateImage(device, &ii, nullptr, &im.image), "vkCreateImage");
  VkMemoryRequirements req;
  vkGetImageMemoryRequirements(device, im.image, &req);
  VkMemoryAllocateInfo ai{VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO};
  ai.allocationSize = req.size;
  ai.memoryTypeIndex = memory_type(req.memoryTypeBits, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT);
  check(vkAllocateMemory(device, &ai, nullptr, &im.memory), "vkAllocateMemory(image)");
  check(vkBindImageMemory(device, im.image, im.memory, 0), "vkBindImageMemory");
  VkImageViewCreateInfo vi{VK_STRUCTURE_TYPE_IMAGE_VIEW_CREATE_INFO};
  vi.image = im.image;
  vi.viewType = VK_IMAGE_VIEW_TYPE_2D;
  vi.format = format;
  if (red_as_green) vi.components.g = VK_COMPONENT_SWIZZLE_R;
  vi.subresourceRange = {VK_IMAGE_ASPECT_COLOR_BIT, 0, 1, 0, 1};
  check(vkCreateImageView(device, &vi, nullptr, &im.view), "vkCreateImageView");
  return im;
}

void VulkanHeatmapRenderer::Impl::free_image(Image& im) {
  if (im.view) vkDestroyImageView(device, im.view, nullptr);
  if (im.image) vkDestroyImage(device, im.image, nullptr);
  if (im.memory) vkFreeMemory(device, im.memory, nullptr);
  im = {};
}

void VulkanHeatmapRenderer::Impl::begin() {
  check(vkResetCommandBuffer(cmd, 0), "vkResetCommandBuffer");
  VkCommandBufferBeginInfo bi{VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
  bi.flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT;
  check(vkBeginCommandBuffer(cmd, &bi), "vkBeginCommandBuffer");
}

void VulkanHeatmapRenderer::Impl::submit_and_wait() {
  check(vkEndCommandBuffer(cmd), "vkEndCommandBuffer");
  VkSubmitInfo si{VK_STRUCTURE_TYPE_SUBMIT_INFO};
  si.commandBufferCount = 1;
  si.pCommandBuffers = &cmd;
  check(vkResetFences(device, 1, &fence), "vkResetFences");
  check(vkQueueSubmit(queue, 1, &si, fence), "vkQueueSubmit");
  check(vkWaitForFences(device, 1, &fence, VK_TRUE, UINT64_MAX), "vkWaitForFences");
}

void VulkanHeatmapRenderer::Impl::upload(const Image& im, int w, int h, const void* data,
                                         size_t texel_bytes, size_t src_row_texels) {
  Buffer staging =
      make_buffer(static_cast<VkDeviceSize>(w) * h * texel_bytes, VK_BUFFER_USAGE_TRANSFER_SRC_BIT);
  auto* dst = static_cast<uint8_t*>(staging.mapped);
  const auto* src = static_cast<const uint8_t*>(data);
  for (int y = 0; y < h; ++y)
    std::memcpy(dst + static_cast<size_t>(y) * w * texel_bytes,
                src + static_cast<size_t>(y) * src_row_texels * texel_bytes, w * texel_bytes);
  begin();
  VkImageMemoryBarrier b{VK_STRUCTURE_TYPE_IMAGE_MEMORY_BARRIER};
  b.srcQueueFamilyIndex = b.dstQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED;
  b.image = im.image;
  b.subresourceRange = {VK_IMAGE_ASPECT_COLOR_BIT, 0, 1, 0, 1};
  b.oldLayout = VK_IMAGE_LAYOUT_UNDEFINED;
  b.newLayout = VK_IMAGE_LAYOUT_TRANSFER_DST_OPTIMAL;
  b.srcAccessMask = 0;
  b.dstAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT;
  vkCmdPipelineBarrier(cmd, VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT, VK_PIPELINE_STAGE_TRANSFER_BIT, 0, 0,
                       nullptr, 0, nullptr, 1, &b);
  VkBufferImageCopy region{};
  region.imageSubresource = {VK_IMAGE_ASPECT_COLOR_BIT, 0, 0, 1};
  region.imageExtent = {static_cast<uint32_t>(w), static_cast<uint32_t>(h), 1};
  vkCmdCopyBufferToImage(cmd, staging.buffer, im.image, VK_IMAGE_LAYOUT_TRANSFER_DST_OPTIMAL, 1,
                         &region);
  b.oldLayout = VK_IMAGE_LAYOUT_TRANSFER_DST_OPTIMAL;
  b.newLayout = VK_IMAGE_LAYOUT_SHADER_READ_ONLY_OPTIMAL;
  b.srcAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT;
  b.dstAccessMask = VK_ACCESS_SHADER_READ_BIT;
  vkCmdPipelineBarrier(cmd, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_PIPELINE_STAGE_FRAGMENT_SHADER_BIT,
                       0, 0, nullptr, 0, nullptr, 1, &b);
  submit_and_wait();
  free_buffer(staging);
}

void VulkanHeatmapRenderer::Impl::upload_all(const std::vector<Region>& regions, bool keep) {
  if (regions.empty()) return;
  VkDeviceSize total = 0;
  std::vector<VkDeviceSize> offsets;
  for (const Region& r : regions) {
    offsets.push_back(total);
    total += (static_cast<VkDeviceSize>(r.w) * r.h * r.texel_bytes + 15) / 16 * 16;
  }
  if (staging.size < total) {
    free_buffer(staging);
    staging = make_buffer(total, VK_BUFFER_USAGE_TRANSFER_SRC_BIT);
  }
  auto* dst = static_cast<uint8_t*>(staging.mapped);
  for (size_t i = 0; i < regions.size(); ++i) {
    const Region& r = regions[i];
    const size_t row = static_cast<size_t>(r.w) * r.texel_bytes;
    for (int y = 0; y < r.h; ++y)
      std::memcpy(dst + offsets[i] + static_cast<size_t>(y) * row,
                  r.src + static_cast<size_t>(y) * r.row_texels * r.texel_bytes, row);
  }
  begin();
  std::vector<VkImageMemoryBarrier> bs(regions.size(), {VK_STRUCTURE_TYPE_IMAGE_MEMORY_BARRIER});
  for (size_t i = 0; i < regions.size(); ++i) {
    VkImageMemoryBarrier& b = bs[i];
    b.srcQueueFamilyIndex = b.dstQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED;
    b.image = regions[i].image;
    b.subresourceRange = {VK_IMAGE_ASPECT_COLOR_BIT, 0, 1, 0, 1};
    b.oldLayout = keep ? VK_IMAGE_LAYOUT_SHADER_READ_ONLY_OPTIMAL : VK_IMAGE_LAYOUT_UNDEFINED;
    b.newLayout = VK_IMAGE_LAYOUT_TRANSFER_DST_OPTIMAL;
    b.srcAccessMask = keep ? VK_ACCESS_SHADER_READ_BIT : 0;
    b.dstAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT;
  }
  vkCmdPipelineBarrier(
      cmd,
      keep ? VK_PIPELINE_STAGE_VERTEX_SHADER_BIT | VK_PIPELINE_STAGE_FRAGMENT_SHADER_BIT
           : VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT,
      VK_PIPELINE_STAGE_TRANSFER_BIT, 0, 0, nullptr, 0, nullptr, static_cast<uint32_t>(bs.size()),
      bs.data());
  for (size_t i = 0; i < regions.size(); ++i) {
    VkBufferImageCopy region{};
    region.bufferOffset = offsets[i];
    region.imageSubresource = {VK_IMAGE_ASPECT_COLOR_BIT, 0, 0, 1};
    region.imageOffset = {regions[i].x, regions[i].y, 0};
    region.imageExtent = {static_cast<uint32_t>(regions[i].w), static_cast<uint32_t>(regions[i].h),
                          1};
    vkCmdCopyBufferToImage(cmd, staging.buffer, regions[i].image,
                           VK_IMAGE_LAYOUT_TRANSFER_DST_OPTIMAL, 1, &region);
  }
  for (VkImageMemoryBarrier& b : bs) {
    b.oldLayout = VK_IMAGE_LAYOUT_TRANSFER_DST_OPTIMAL;
    b.newLayout = VK_IMAGE_LAYOUT_SHADER_READ_ONLY_OPTIMAL;
    b.srcAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT;
    b.dstAccessMask = VK_ACCESS_SHADER_READ_BIT;
  }
  vkCmdPipelineBarrier(cmd, VK_PIPELINE_STAGE_TRANSFER_BIT,
                       VK_PIPELINE_STAGE_VERTEX_SHADER_BIT | VK_PIPELINE_STAGE_FRAGMENT_SHADER_BIT,
                       0, 0, nullptr, 0, nullptr, static_cast<uint32_t>(bs.size()), bs.data());
  submit_and_wait();
  if (staging.size > kKeepStagingBytes) free_buffer(staging);
}

}  // namespace moelab::views
